import { expect } from 'chai';
import { pci } from '@p2p/proto';
import { distanceMatrix, type HostView, hostHeading, renderTree, type TopologyView } from './topology-tree';

const fn = (bdf: string, name: string, bars: pci.Bar[] = []): pci.FunctionInfo => ({
  bdf,
  name,
  kind: pci.FunctionKind.FUNCTION_KIND_NVME,
  vendorId: 0x144d,
  deviceId: 0xa824,
  classCode: 0x010802,
  bars,
  powerState: pci.PowerState.POWER_STATE_D0,
  memoryEnabled: true,
  busMaster: false,
  present: true,
});

const bar: pci.Bar = { index: 2, size: 16n << 20n, is64bit: true, prefetchable: true, kind: pci.BarKind.BAR_KIND_MEMORY, busAddress: 0x10400000000n, window: undefined };

/** A root port with a switch and two NVMe functions below it. */
const view: TopologyView = {
  topology: {
    hostBridges: [{ name: 'hb0', domain: 0, p2pAllowed: false, rootPortBdfs: ['0000:00:01.0'] }],
    switches: [
      { name: 'swA', upstreamBdf: '0000:01:00.0', acsSourceValidation: true, acsRequestRedirect: false, acsCompletionRedirect: false, acsUpstreamForwarding: false, downstreamBdfs: ['0000:02:00.0', '0000:02:01.0'] },
    ],
    nodes: [
      { bdf: '0000:00:01.0', role: 'root_port', parentBdf: '' },
      { bdf: '0000:01:00.0', role: 'switch_upstream', parentBdf: '0000:00:01.0' },
      { bdf: '0000:02:01.0', role: 'switch_downstream', parentBdf: '0000:01:00.0' },
      { bdf: '0000:02:00.0', role: 'switch_downstream', parentBdf: '0000:01:00.0' },
      { bdf: '0000:03:00.0', role: 'endpoint', parentBdf: '0000:02:00.0' },
      { bdf: '0000:04:00.0', role: 'endpoint', parentBdf: '0000:02:01.0' },
    ],
    functions: [fn('0000:03:00.0', 'nvme0', [bar]), { ...fn('0000:04:00.0', 'nvme1'), memoryEnabled: false, powerState: pci.PowerState.POWER_STATE_D3HOT }],
  },
  owners: new Map([['0000:03:00.0', { driver: 'vfio-pci', pid: 7 }]]),
  distances: [
    { provider: '0000:03:00.0', client: '0000:03:00.0', mapType: pci.P2pMapType.P2P_MAP_TYPE_BUS_ADDR, distance: 0 },
    { provider: '0000:03:00.0', client: '0000:04:00.0', mapType: pci.P2pMapType.P2P_MAP_TYPE_BUS_ADDR, distance: 4 },
    { provider: '0000:04:00.0', client: '0000:03:00.0', mapType: pci.P2pMapType.P2P_MAP_TYPE_NOT_SUPPORTED, distance: -1 },
    { provider: '0000:04:00.0', client: '0000:04:00.0', mapType: pci.P2pMapType.P2P_MAP_TYPE_THRU_HOST_BRIDGE, distance: 0 },
  ],
};

describe('cli topology tree', () => {
  it('draws ports and functions in BDF order, BARs under their function, the driver and the power and decode state', () => {
    expect(renderTree(view)).to.deep.equal([
      'hb0 host bridge, domain 0000 (P2P between root ports not allowed)',
      '└─ 0000:00:01.0 root port',
      '   └─ 0000:01:00.0 switch upstream port swA (ACS SrcValid+ ReqRedir- CmpltRedir- UpstreamFwd-)',
      '      ├─ 0000:02:00.0 switch downstream port',
      '      │  └─ 0000:03:00.0 nvme0: Non-Volatile memory controller [144d:a824] (D0 Mem+ BusMaster-; driver vfio-pci, open by pid 7)',
      '      │          BAR2 0x10400000000 [size=16M] 64-bit prefetchable memory',
      '      └─ 0000:02:01.0 switch downstream port',
      '         └─ 0000:04:00.0 nvme1: Non-Volatile memory controller [144d:a824] (D3hot Mem- BusMaster-; no driver)',
    ]);
  });

  it('tabulates distances per provider and client, marking host-bridge routes and unsupported pairs', () => {
    expect(distanceMatrix(view)).to.deep.equal([
      ['provider \\ client', 'nvme0', 'nvme1'],
      ['nvme0 0000:03:00.0', '0', '4'],
      ['nvme1 0000:04:00.0', '-', '0 host'],
    ]);
  });
});

describe('cli topology host heading', () => {
  const host = (nics: HostView['nics']): HostView => ({ name: 'host1', pciEmu: '127.0.0.1:50061', shmDir: '/dev/shm/p2p-dmabuf/host1', nics, view });

  it("names the host, its pci-emu, its segment directory, and each NIC's function and GID", () => {
    const heading = hostHeading(
      host([
        { address: '127.0.0.1:50064', name: 'nic0', bdf: '0000:04:00.0', gid: '::ffff:127.0.1.2' },
        { address: '127.0.0.1:50065', name: 'nic1', bdf: '0000:09:00.0', gid: '::ffff:127.0.1.3' },
      ]),
    );
    expect(heading).to.equal('host1  pci-emu 127.0.0.1:50061  shm /dev/shm/p2p-dmabuf/host1  nic0 0000:04:00.0 gid ::ffff:127.0.1.2  nic1 0000:09:00.0 gid ::ffff:127.0.1.3');
  });

  it('says which NIC did not answer, and why', () => {
    expect(hostHeading(host([{ address: '127.0.0.1:50064', error: 'ECONNREFUSED' }]))).to.equal('host1  pci-emu 127.0.0.1:50061  shm /dev/shm/p2p-dmabuf/host1  NIC 127.0.0.1:50064: ECONNREFUSED');
  });
});
