import { expect } from 'chai';
import { ErrnoError } from '@p2p/errno';
import { hostLayout, hostLayouts, MAX_HOSTS, nicEnv, serviceEnv } from './layout';

describe('host layout', () => {
  it("host 0 is npm start's stack, port for port: services 50051-50055, metrics 9451-9455, NICs on 127.0.0.2 and 127.0.0.3", () => {
    const host = hostLayout(0);
    expect(host.name).to.equal('host0');
    expect(host.ports).to.deep.equal({ pciEmu: 50051, vfioPci: 50052, registry: 50053 });
    expect(host.metricsPorts).to.deep.equal({ pciEmu: 9451, vfioPci: 9452, registry: 9453 });
    expect(host.nics).to.deep.equal([
      { name: 'nic0', bdf: '0000:04:00.0', port: 50054, metricsPort: 9454, gidAddress: '127.0.0.2' },
      { name: 'nic1', bdf: '0000:09:00.0', port: 50055, metricsPort: 9455, gidAddress: '127.0.0.3' },
    ]);
  });

  it('host 3 is offset by three strides of 10 and its NICs are on 127.0.3.2 and 127.0.3.3', () => {
    const host = hostLayout(3);
    expect(host.ports).to.deep.equal({ pciEmu: 50081, vfioPci: 50082, registry: 50083 });
    expect(host.nics.map((n) => [n.port, n.metricsPort, n.gidAddress])).to.deep.equal([
      [50084, 9484, '127.0.3.2'],
      [50085, 9485, '127.0.3.3'],
    ]);
  });

  it('a metrics port base of 0 lets every service pick a free port, -1 turns metrics off', () => {
    expect(hostLayout(2, { portBase: 40000, metricsPortBase: 0 }).nics.map((n) => n.metricsPort)).to.deep.equal([0, 0]);
    expect(hostLayout(2, { portBase: 40000, metricsPortBase: -1 }).metricsPorts).to.deep.equal({ pciEmu: -1, vfioPci: -1, registry: -1 });
  });

  it("the service environment points vfio-pci, the registry and the NICs at their own host's pci-emu and registry", () => {
    const env = serviceEnv(hostLayout(1));
    expect(env).to.include({ PCI_EMU_PORT: '50061', DMABUF_REGISTRY_PORT: '50063', PCI_EMU_ADDRESS: '127.0.0.1:50061', DMABUF_REGISTRY_ADDRESS: '127.0.0.1:50063' });
    expect(nicEnv(hostLayout(1).nics[1]!)).to.deep.equal({ RDMA_NIC_BDF: '0000:09:00.0', RDMA_NIC_PORT: '50065', RDMA_NIC_METRICS_PORT: '9465', RDMA_NIC_GID_ADDRESS: '127.0.1.3' });
  });

  it('is EINVAL past the last loopback octet', () => {
    expect(() => hostLayout(MAX_HOSTS)).to.throw(ErrnoError).with.property('errno', 'EINVAL');
  });

  it('is EINVAL when the last host would pass port 65535', () => {
    expect(() => hostLayouts(16, { portBase: 65500, metricsPortBase: 0 })).to.throw(ErrnoError, 'host 4').with.property('errno', 'EINVAL');
  });
});
