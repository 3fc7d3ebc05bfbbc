import * as path from 'node:path';
import { expect } from 'chai';
import { defaultTopology, loadTopologyFile } from '@p2p/pci-emu';

describe('deploy/topologies/default.yaml', () => {
  it('is the default topology, spelled out', () => {
    const file = loadTopologyFile(path.resolve(__dirname, '..', '..', '..', 'deploy', 'topologies', 'default.yaml'));
    expect(JSON.parse(JSON.stringify(file))).to.deep.equal(JSON.parse(JSON.stringify(defaultTopology())));
  });
});
