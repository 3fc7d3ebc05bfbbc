import { randomBytes } from 'node:crypto';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { loadPlatformSecrets } from '@p2p/auth';
import { loadServerConfig, type RunningServer } from '@p2p/server';
import { claimShmDir, PCI_EMU_SEGMENT_PREFIX, resolveShmDir, SegmentStore, type WriteNoticeServer } from '@p2p/shm';
import { PciBus } from './bus/pci-bus';
import { FileNamespaceStore } from './devices/nvme/namespace-file';
import { HostSegmentCache } from './iommu/host-memory';
import { RelocatableMemory } from './relocatable-memory';
import { startPciEmuServer } from './server';
import { defaultTopology } from './topology/default-topology';
import { loadTopologyFile } from './topology/load-topology';
import { listenForWriteNotices } from './write-notices';

export const PCI_EMU_DEFAULTS = { port: 50051, metricsPort: 9451 };

/**
 * pci-emu as deployed: the topology from PCI_EMU_TOPOLOGY (or the default),
 * BAR memory in shared-memory segments under P2P_SHM_DIR, and the gRPC
 * server. Segment names carry a per-start instance tag, so a restarted
 * pci-emu never hands out a file a stale mapping still points at; its
 * segments are unlinked when it shuts down, and those of an instance that
 * crashed are unlinked when the next one starts. One pci-emu per directory:
 * a second one fails with EBUSY before it touches any file. Bus masters in
 * other processes report their writes into BAR segments on the
 * write-notice socket in the same directory (write-notices.ts). NVMe
 * namespaces are sparse files in PCI_EMU_DATA_DIR, which outlive pci-emu.
 */
export async function startPciEmu(env: NodeJS.ProcessEnv = process.env): Promise<RunningServer> {
  const config = loadServerConfig('PCI_EMU', PCI_EMU_DEFAULTS, env);
  const topology = env.PCI_EMU_TOPOLOGY ? loadTopologyFile(env.PCI_EMU_TOPOLOGY) : defaultTopology();
  const directory = resolveShmDir(env);
  // The claim comes before the sweep: without it, the sweep would unlink the
  // BAR memory of a pci-emu still serving from this directory.
  const claim = await claimShmDir(directory, 'pci-emu');
  const memories = new Map<string, RelocatableMemory>();
  let bus: PciBus | undefined;
  let notices: WriteNoticeServer | undefined;
  const destroy = async (): Promise<void> => {
    try {
      await notices?.close();
      bus?.close();
      for (const memory of memories.values()) memory.destroy();
    } finally {
      await claim.release();
    }
  };
  try {
    const store = new SegmentStore({ dir: directory });
    // Files of an earlier instance that died without unlinking them are its
    // dead memory, so they go now.
    for (const segment of store.list()) {
      if (segment.name.startsWith(PCI_EMU_SEGMENT_PREFIX)) store.unlink(segment.name);
    }
    const instance = randomBytes(4).toString('hex');
    const dataDir = namespaceDirectory(env, directory);
    fs.mkdirSync(dataDir, { recursive: true, mode: 0o700 });
    // Host memory is the directory's other segments (the registry's heap):
    // a BAR's own files would bypass its decode and relocation.
    const hostMemory = new HostSegmentCache(store, { refuse: (name) => name.startsWith(PCI_EMU_SEGMENT_PREFIX) });
    bus = new PciBus(
      topology,
      (name, size) => {
        const memory = new RelocatableMemory(store, `${PCI_EMU_SEGMENT_PREFIX}${instance}.${name}`, size);
        memories.set(name, memory);
        return memory;
      },
      {
        hostMemory,
        namespaceStore: (bdf, nsid, blocks, blockSize) => FileNamespaceStore.open(dataDir, `${bdf.replace(/:/g, '-')}-n${nsid}`, blocks, blockSize),
      },
    );
    // A device failing on a notice is reported once the server's logger exists; none can arrive before the NICs start.
    let report = (_error: unknown): void => undefined;
    notices = await listenForWriteNotices(directory, instance, memories, bus, (error) => report(error));
    const server = await startPciEmuServer(config, bus, {
      directory,
      extents: (name, offset, length) =>
        memories
          .get(name)!
          .extents(offset, length)
          .map((e) => ({ segment: e.segment, offset: BigInt(e.offset), length: BigInt(e.length) })),
      relocate: (name) => memories.get(name)!.relocate(),
    }, loadPlatformSecrets(directory, env));
    report = (error) => server.logger.warn({ err: error }, 'write notice: the device failed on a posted write');
    server.onShutdown(destroy);
    return server;
  } catch (error) {
    await destroy();
    throw error;
  }
}

/**
 * PCI_EMU_DATA_DIR, else a directory inside the segment directory: it
 * survives pci-emu's restarts, as a disk does, two stacks on one machine
 * (each its own P2P_SHM_DIR) never share a namespace, and it goes with the
 * segment directory. Segment listings skip directories.
 */
function namespaceDirectory(env: NodeJS.ProcessEnv, shmDir: string): string {
  const configured = env['PCI_EMU_DATA_DIR'];
  return configured !== undefined && configured !== '' ? path.resolve(configured) : path.join(shmDir, 'nvme-namespaces');
}
