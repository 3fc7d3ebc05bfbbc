import { expect } from 'chai';
import { DEFAULT_TOPOLOGY, defaultTopology } from './default-topology';
import { topologyFromObject } from './load-topology';
import { p2pDistance } from './p2p-distance';
import type { TopologyInput } from './topology-schema';

const NVME0 = '0000:03:00.0';
const NIC0 = '0000:04:00.0';
const ACCEL0 = '0000:07:00.0';
const NIC1 = '0000:09:00.0';

/** The default topology with switch B's ACS and the host bridge's P2P policy changed. */
function variant(acs: { requestRedirect?: boolean; completionRedirect?: boolean }, p2pAllowed = true): TopologyInput {
  const copy = structuredClone(DEFAULT_TOPOLOGY);
  const bridge = copy.hostBridges[0]!;
  bridge.p2pAllowed = p2pAllowed;
  bridge.rootPorts[1]!.switch!.acs = acs;
  return copy;
}

describe('p2p distance (pci_p2pdma_distance)', () => {
  const topology = defaultTopology();

  it('maps peers under one switch to BUS_ADDR, turning at the upstream port', () => {
    expect(p2pDistance(topology, NVME0, NIC0)).to.deep.equal({
      mapType: 'BUS_ADDR',
      distance: 4,
      path: [
        { role: 'switch_downstream', id: '0000:02:01.0' },
        { role: 'switch_upstream', id: '0000:01:00.0' },
        { role: 'switch_downstream', id: '0000:02:00.0' },
      ],
    });
    expect(p2pDistance(topology, ACCEL0, NIC1)).to.include({ mapType: 'BUS_ADDR', distance: 4 });
    expect(p2pDistance(topology, ACCEL0, ACCEL0)).to.deep.equal({ mapType: 'BUS_ADDR', distance: 0, path: [] });
  });

  it('maps peers under different switches through the host bridge', () => {
    const result = p2pDistance(topology, ACCEL0, NIC0);
    expect(result.mapType).to.equal('THRU_HOST_BRIDGE');
    expect(result.distance).to.equal(8, 'four devices up each side');
    expect(result.path.map((hop) => hop.id)).to.deep.equal([
      '0000:02:01.0',
      '0000:01:00.0',
      '0000:00:01.0',
      'hb0',
      '0000:00:02.0',
      '0000:05:00.0',
      '0000:06:00.0',
    ]);
  });

  it('sends peers under a switch with ACS redirect through the host bridge', () => {
    for (const acs of [{ requestRedirect: true }, { completionRedirect: true }]) {
      const redirected = topologyFromObject(variant(acs));
      expect(p2pDistance(redirected, ACCEL0, NIC1)).to.include({ mapType: 'THRU_HOST_BRIDGE', distance: 4 });
      expect(p2pDistance(redirected, NVME0, NIC0).mapType).to.equal('BUS_ADDR', 'switch A is unaffected');
    }
  });

  it('refuses the host bridge path when the bridge does not allow P2P', () => {
    const closed = topologyFromObject(variant({ requestRedirect: true }, false));
    expect(p2pDistance(closed, ACCEL0, NIC0)).to.include({ mapType: 'NOT_SUPPORTED', distance: -1 });
    expect(p2pDistance(closed, ACCEL0, NIC1).mapType).to.equal('NOT_SUPPORTED');
    expect(p2pDistance(closed, NVME0, NIC0).mapType).to.equal('BUS_ADDR');
  });

  it('crosses two host bridges only if both allow it', () => {
    const twoBridges = (p2pAllowed: boolean): TopologyInput => ({
      hostBridges: [
        { name: 'a', rootPorts: [{ bdf: '00:01.0', functions: [{ kind: 'nic', name: 'n', bdf: '01:00.0' }] }] },
        { name: 'b', bus: 0x80, p2pAllowed, rootPorts: [{ bdf: '80:01.0', functions: [{ kind: 'accel', name: 'g', bdf: '81:00.0' }] }] },
      ],
    });
    const open = p2pDistance(topologyFromObject(twoBridges(true)), '0000:81:00.0', '0000:01:00.0');
    expect(open).to.include({ mapType: 'THRU_HOST_BRIDGE', distance: 4 });
    expect(open.path.map((hop) => hop.id)).to.deep.equal(['0000:00:01.0', 'a', 'b', '0000:80:01.0']);
    expect(p2pDistance(topologyFromObject(twoBridges(false)), '0000:81:00.0', '0000:01:00.0').mapType).to.equal('NOT_SUPPORTED');
  });

  it('answers ENODEV for anything that is not a function', () => {
    expect(() => p2pDistance(topology, '0000:02:00.0', NIC0)).to.throw('ENODEV');
    expect(() => p2pDistance(topology, NVME0, '0000:0a:00.0')).to.throw('ENODEV');
  });
});
