import * as fs from 'node:fs';
import * as path from 'node:path';
import { expect } from 'chai';
import { OwnerSession, RegistrySession, SharedMemoryExporter } from '@p2p/dmabuf-client';
import { ErrnoError } from '@p2p/errno';
import { dmabuf } from '@p2p/proto';
import { SegmentStore, SharedMemory } from '@p2p/shm';
import { rejection, startServiceProcess, tempShmDir, platformSecretsOf } from '@p2p/testing';

const ACCEL0 = '0000:07:00.0';
const NIC0 = '0000:04:00.0';
const NIC1 = '0000:09:00.0';
const SIZE = 64 * 1024;
const BAR_BUS_ADDRESS = 0x40_0000_0000n;

/**
 * P2P eligibility decided at map time from pci-emu's topology
 * (pci_p2pdma_map_type): the registry asks pci-emu, a separate process, about
 * the provider BAR's function and the importing function.
 */
describe('dmabuf-registry P2P eligibility from the pci-emu topology', function () {
  this.timeout(30_000);

  async function stack(topology?: string) {
    const shmDir = tempShmDir();
    const env = { P2P_SHM_DIR: shmDir, LOG_LEVEL: 'warn', ...(topology ? { PCI_EMU_TOPOLOGY: topology } : {}) };
    const pciEmu = await startServiceProcess('pci-emu', 'PCI_EMU', { env });
    const registry = await startServiceProcess('dmabuf-registry', 'DMABUF_REGISTRY', { env: { ...env, PCI_EMU_ADDRESS: pciEmu.address } });
    const store = new SegmentStore({ dir: shmDir });
    const exporter = new SharedMemoryExporter(store);
    const owner = await OwnerSession.open(registry.address, { credential: platformSecretsOf(shmDir).platformToken, name: 'bar-exporter', shmDir, ops: exporter });
    const holder = await RegistrySession.open(registry.address, { name: 'spdk', shmDir });
    exporter.addBuffer('accel0-bar2', SharedMemory.create(store, 'bar-accel0', SIZE), BAR_BUS_ADDRESS);
    const { fd } = await owner.exportDmaBuf({ pid: holder.pid, size: SIZE, handle: 'accel0-bar2', providerBdf: ACCEL0, requirePeer2peer: true });
    const mapFrom = async (importerBdf: string) => (await holder.importDmaBuf({ fd, importerBdf })).map();
    const stop = async (): Promise<void> => {
      await Promise.all([holder.close(), owner.close()]);
      await Promise.all([registry.stop(), pciEmu.stop()] as Array<Promise<unknown>>);
      fs.rmSync(shmDir, { recursive: true, force: true });
    };
    return { mapFrom, stop };
  }

  it('maps a peer under the same switch as BUS_ADDR and one across switches THRU_HOST_BRIDGE, with the BAR bus addresses', async () => {
    const s = await stack();
    try {
      const near = await s.mapFrom(NIC1);
      expect(near.mapType).to.equal(dmabuf.DmaMapType.DMA_MAP_TYPE_BUS_ADDR);
      expect(near.extents[0]!.dmaAddress).to.equal(BAR_BUS_ADDRESS);
      const far = await s.mapFrom(NIC0);
      expect(far.mapType).to.equal(dmabuf.DmaMapType.DMA_MAP_TYPE_THRU_HOST_BRIDGE);
    } finally {
      await s.stop();
    }
  });

  it('fails the map with EINVAL where the host bridge does not allow P2P, and for a CPU importer', async () => {
    const dir = fs.mkdtempSync(path.join(tempShmDir(), 'topology-'));
    const file = path.join(dir, 'no-p2p.yaml');
    const text = fs.readFileSync(path.resolve(__dirname, '..', '..', '..', 'deploy', 'topologies', 'default.yaml'), 'utf8');
    fs.writeFileSync(file, text.replace('p2pAllowed: true', 'p2pAllowed: false'));
    const s = await stack(file);
    try {
      expect((await s.mapFrom(NIC1)).mapType).to.equal(dmabuf.DmaMapType.DMA_MAP_TYPE_BUS_ADDR);
      const refused = await rejection(s.mapFrom(NIC0));
      expect(refused).to.be.instanceOf(ErrnoError).with.property('errno', 'EINVAL');
      const cpu = await rejection(s.mapFrom(''));
      expect(cpu).to.be.instanceOf(ErrnoError).with.property('errno', 'EINVAL');
    } finally {
      await s.stop();
      fs.rmSync(path.dirname(dir), { recursive: true, force: true });
    }
  });
});
