import * as fs from 'node:fs';
import { expect } from 'chai';
import { DMA_STATUS_DONE, DMA_STATUS_ERROR } from '@p2p/pci-emu';
import { dmabuf, pci } from '@p2p/proto';
import { asAdmin, asPlatform, eventually, type ServiceProcess, startServiceProcess, tempShmDir } from '@p2p/testing';
import { rpc } from '../harness/rpc';
import { runExample } from '../harness/run-example';
import { iommufdP2p } from './iommufd-p2p';

/** The CMB's IOVA in the example's IOAS. */
const CMB_IOVA = 0x2000_0000n;

/**
 * The DMA-mapping example against pci-emu, the registry and vfio-pci, each
 * its own process on one segment directory as npm start and compose run
 * them: called as a function, and run as the command the README shows.
 */
describe('example: iommufd-p2p (accel0 copies a heap buffer into nvme1’s CMB through an IOAS)', function () {
  this.timeout(60_000);
  let shmDir: string;
  const services: ServiceProcess[] = [];
  let registryAddress: string;
  let vfioAddress: string;
  let debugfs: dmabuf.DmaBufRegistryServiceClient;
  let platform: pci.PciEmuServiceClient;

  before(async () => {
    shmDir = tempShmDir();
    const env = { P2P_SHM_DIR: shmDir, LOG_LEVEL: 'warn' };
    const pciEmu = await startServiceProcess('pci-emu', 'PCI_EMU', { env });
    services.push(pciEmu);
    const registry = await startServiceProcess('dmabuf-registry', 'DMABUF_REGISTRY', { env: { ...env, PCI_EMU_ADDRESS: pciEmu.address } });
    services.push(registry);
    const vfioPci = await startServiceProcess('vfio-pci', 'VFIO_PCI', { env: { ...env, PCI_EMU_ADDRESS: pciEmu.address, DMABUF_REGISTRY_ADDRESS: registry.address } });
    services.push(vfioPci);
    registryAddress = registry.address;
    vfioAddress = vfioPci.address;
    const root = asAdmin(shmDir);
    debugfs = new dmabuf.DmaBufRegistryServiceClient(registryAddress, root.credentials, root.options);
    const hardware = asPlatform(shmDir);
    platform = new pci.PciEmuServiceClient(pciEmu.address, hardware.credentials, hardware.options);
  });

  after(async () => {
    debugfs?.close();
    platform?.close();
    for (const service of services.reverse()) await service.stop('SIGKILL');
    fs.rmSync(shmDir, { recursive: true, force: true });
  });

  it('copies 1 MiB from the heap buffer into the CMB, faults once the CMB is revoked, and leaves no pin or domain behind', async () => {
    const lines: string[] = [];
    const result = await iommufdP2p({ registry: registryAddress, vfioPci: vfioAddress, shmDir, log: (line) => lines.push(line) });
    expect(result.transfer).to.deep.equal({ status: DMA_STATUS_DONE, error: 'NONE', faultIova: 0n });
    expect(result.copied.length).to.equal(1 << 20);
    expect(result.copied.equals(result.expected)).to.equal(true);
    expect(result.afterRevoke).to.deep.equal({ status: DMA_STATUS_ERROR, error: 'IOMMU_FAULT_WRITE', faultIova: CMB_IOVA });
    expect(lines.at(-1)).to.match(/STATUS=ERROR ERROR=IOMMU_FAULT_WRITE at IOVA 0x20000000$/);

    // The example's process has exited: vfio-pci unpinned its pages and the platform freed accel0's domain.
    await eventually('the domain to be freed', async () => (await rpc<pci.ListIommuDomainsResponse>((cb) => platform.listIommuDomains({ domainId: 0 }, cb))).domains.length === 0);
    const { buffers } = await rpc<dmabuf.GetBufInfoResponse>((cb) => debugfs.getBufInfo({}, cb));
    expect(buffers.filter((b) => b.userPins > 0)).to.deep.equal([]);
  });

  it('runs as the README shows it, a second time on the same stack, and ends with "identical"', async () => {
    const { code, stderr, lines } = await runExample('iommufd-p2p', { DMABUF_REGISTRY_ADDRESS: registryAddress, VFIO_PCI_ADDRESS: vfioAddress, P2P_SHM_DIR: shmDir }, 30_000);
    expect(code, stderr).to.equal(0);
    expect(lines.at(-2)).to.match(/ERROR=IOMMU_FAULT_WRITE/);
    expect(lines.at(-1)).to.equal("1048576 bytes copied by accel0's DMA engine from host memory into nvme1's CMB: identical");
  });
});
