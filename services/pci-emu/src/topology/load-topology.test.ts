import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { expect } from 'chai';
import { ErrnoError } from '@p2p/errno';
import { canonicalBdf } from './bdf';
import { defaultTopology } from './default-topology';
import { loadTopologyFile, parseTopology, topologyFromObject } from './load-topology';

const YAML_TOPOLOGY = `
hostBridges:
  - name: hb0
    domain: 0x0001
    mmio64: { base: 0x8000000000, size: 256GiB }
    rootPorts:
      - bdf: "0001:00:01.0"
        functions:
          - { kind: accel, name: gpu0, bdf: "0001:01:00.0", memorySize: 64GiB }
          - kind: generic
            name: scratch
            bdf: "0001:01:00.1"
            ids: { vendorId: 0x1234, deviceId: 0x11e9 }
            bars:
              - { index: 0, size: 4KiB }
              - { index: 2, size: 1MiB, bits: 64, prefetchable: true }
              - { index: 4, size: 32, space: io }
`;

/** The EINVAL detail of what `load` throws. */
function einval(load: () => unknown): string {
  try {
    load();
  } catch (error) {
    expect(error).to.be.instanceOf(ErrnoError);
    expect((error as ErrnoError).errno).to.equal('EINVAL');
    return (error as ErrnoError).detail;
  }
  throw new Error('expected EINVAL');
}

function withPort(port: object): object {
  return { hostBridges: [{ name: 'hb0', rootPorts: [port] }] };
}

describe('topology loading', () => {
  it('parses BDFs in both forms', () => {
    expect(canonicalBdf('03:00.0')).to.equal('0000:03:00.0');
    expect(canonicalBdf('0001:0A:1f.7')).to.equal('0001:0a:1f.7');
    expect(() => canonicalBdf('00:20.0')).to.throw('EINVAL');
    expect(() => canonicalBdf('00:01.8')).to.throw('EINVAL');
  });

  it('loads YAML with hex numbers, size units and defaults', () => {
    const topology = parseTopology(YAML_TOPOLOGY);
    const [bridge] = topology.hostBridges;
    expect(bridge).to.include({ name: 'hb0', domain: 1, bus: 0, p2pAllowed: true });
    expect(bridge!.mmio64).to.deep.equal({ base: 0x80_0000_0000, size: 256 * 2 ** 30 });
    expect(topology.functions.map((fn) => fn.bdf)).to.deep.equal(['0001:01:00.0', '0001:01:00.1']);
    expect(topology.functions[0]).to.include({ kind: 'accel', memorySize: 64 * 2 ** 30, noSoftReset: false });
    expect(topology.node('0001:01:00.1')).to.include({ role: 'endpoint', parentBdf: '0001:00:01.0', hostBridge: 'hb0' });
  });

  it('loads the same topology from a JSON file, hex as strings', () => {
    const dir = mkdtempSync(join(tmpdir(), 'pci-topology-'));
    try {
      const file = join(dir, 'topology.json');
      writeFileSync(
        file,
        JSON.stringify(withPort({ bdf: '00:01.0', functions: [{ kind: 'nvme', name: 'n0', bdf: '01:00.0', cmbSize: '0x100000' }] })),
      );
      expect(loadTopologyFile(file).functions[0]).to.include({ kind: 'nvme', cmbSize: 0x100000 });
      expect(() => loadTopologyFile(join(dir, 'missing.yaml'))).to.throw(ErrnoError, 'ENOENT');
    } finally {
      rmSync(dir, { recursive: true });
    }
  });

  it('builds the default topology: two switches, five functions, ACS off', () => {
    const topology = defaultTopology();
    expect(topology.functions.map((fn) => `${fn.name}@${fn.bdf}`)).to.deep.equal([
      'nvme0@0000:03:00.0',
      'nic0@0000:04:00.0',
      'accel0@0000:07:00.0',
      'nvme1@0000:08:00.0',
      'nic1@0000:09:00.0',
    ]);
    expect(topology.switches.map((sw) => sw.downstreamBdfs.length)).to.deep.equal([2, 3]);
    expect(topology.nodes.every((node) => node.acsCtrl === 0)).to.equal(true);
  });

  it('names the bad field in schema errors', () => {
    expect(einval(() => parseTopology('hostBridges: [ {'))).to.match(/not valid YAML/);
    expect(einval(() => parseTopology('{"hostBridges": [}', 'json'))).to.match(/not valid JSON/);
    expect(einval(() => topologyFromObject({}))).to.match(/^invalid topology: hostBridges: /);
    expect(einval(() => topologyFromObject(withPort({ bdf: '00:01.0', functions: [{ kind: 'nvme', name: 'n', bdf: '01:00.9' }] })))).to.match(
      /hostBridges\[0\]\.rootPorts\[0\]\.functions\[0\]\.bdf: "01:00\.9" is not a PCI address/,
    );
    expect(einval(() => topologyFromObject(withPort({ bdf: '00:01.0', functions: [{ kind: 'gpu', name: 'g', bdf: '01:00.0' }] })))).to.match(
      /rootPorts\[0\]\.functions\[0\]\.kind: /,
    );
    expect(
      einval(() => topologyFromObject(withPort({ bdf: '00:01.0', functions: [{ kind: 'accel', name: 'a', bdf: '01:00.0', memorySize: '3GiB' }] }))),
    ).to.match(/functions\[0\]\.memorySize: must be a power of two/);
    expect(einval(() => topologyFromObject(withPort({ bdf: '00:01.0', functoins: [] })))).to.match(/rootPorts\[0\]: .*functoins/);
  });

  it('names the bad field in structural errors', () => {
    const nvme = (name: string, bdf: string) => ({ kind: 'nvme', name, bdf });
    expect(einval(() => topologyFromObject(withPort({ bdf: '01:01.0' })))).to.match(/rootPorts\[0\]\.bdf: 0000:01:01\.0 is not on root bus 0x0/);
    expect(einval(() => topologyFromObject(withPort({ bdf: '00:01.0', functions: [nvme('a', '01:00.0'), nvme('a', '01:00.1')] })))).to.match(
      /functions\[1\]\.name: name "a" is already used at .*functions\[0\]\.name/,
    );
    expect(einval(() => topologyFromObject(withPort({ bdf: '00:01.0', functions: [nvme('a', '01:01.0')] })))).to.match(/only device 00/);
    expect(einval(() => topologyFromObject(withPort({ bdf: '00:01.0', functions: [nvme('a', '01:00.1')] })))).to.match(/no function 0/);
    expect(einval(() => topologyFromObject(withPort({ bdf: '00:01.0', functions: [nvme('a', '02:00.0'), nvme('b', '03:00.1')] })))).to.match(
      /all must be on one bus/,
    );
    expect(
      einval(() =>
        topologyFromObject(withPort({ bdf: '00:01.0', functions: [nvme('a', '01:00.0')], switch: { name: 's', bdf: '01:00.0', downstreamPorts: [{ bdf: '02:00.0' }] } })),
      ),
    ).to.match(/rootPorts\[0\]: a PCIe link reaches one device/);
    expect(
      einval(() =>
        topologyFromObject({
          hostBridges: [
            { name: 'a', rootPorts: [{ bdf: '00:01.0' }] },
            { name: 'b', bus: 0x80, mmio32: { base: 0x8000_0000, size: 0x100000 }, rootPorts: [{ bdf: '80:01.0' }] },
          ],
        }),
      ),
    ).to.match(/hostBridges\[1\]\.mmio32: window overlaps hostBridges\[0\]\.mmio32/);
    expect(
      einval(() =>
        topologyFromObject(
          withPort({ bdf: '00:01.0', functions: [{ kind: 'generic', name: 'g', bdf: '01:00.0', bars: [{ index: 5, size: 64, bits: 64 }, { index: 0, size: 512, space: 'io' }] }] }),
        ),
      ),
    ).to.match(/bars\[0\]\.index: a 64-bit BAR takes two registers.*bars\[1\]\.size: an I\/O BAR is 4\.\.256 bytes/);
  });
});
