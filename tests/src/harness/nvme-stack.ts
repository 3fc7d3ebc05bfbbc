import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { readAdminToken } from '@p2p/auth';
import { RegistrySession } from '@p2p/dmabuf-client';
import { iommufd, pci, vfio } from '@p2p/proto';
import { connectPeer, type Peer } from '@p2p/rpc';
import { errnoOf } from '@p2p/status';
import { eventually, type ServiceProcess, startServiceProcess, tempShmDir } from '@p2p/testing';
import { NVME1 } from './nvme-cmb-target';
import { startPlatformProcesses } from './platform-processes';
import { type CpuAccess, NvmeDriver, type NvmeQueuePair, type VfioClients, type VfioDevice, VfioDmaSpace } from '@p2p/user-driver';

/** The file behind namespace `nsid` of `bdf` in pci-emu's data directory (0000:08:00.0 n1 -> 0000-08-00.0-n1.img). */
export function namespaceFile(dataDir: string, bdf: string, nsid = 1): string {
  return path.join(dataDir, `${bdf.replace(/:/g, '-')}-n${nsid}.img`);
}

/** `count` blocks of `blockSize` bytes from `lba` of a namespace file, read straight from the disk. */
export function readNamespaceFile(file: string, lba: number, count: number, blockSize: number): Buffer {
  const out = Buffer.alloc(count * blockSize);
  const fd = fs.openSync(file, 'r');
  try {
    fs.readSync(fd, out, 0, out.length, lba * blockSize);
  } finally {
    fs.closeSync(fd);
  }
  return out;
}

/** The administrator's vfio-pci client: binds devices. */
export function adminVfio(shmDir: string, address: string): Peer<typeof vfio.VfioPciServiceDefinition> {
  return connectPeer(vfio.VfioPciServiceDefinition, address, { name: 'vfio-pci', token: readAdminToken(shmDir) });
}

/** Binds `bdf` to vfio-pci, as the administrator; bound already is fine. */
export async function bindToVfio(shmDir: string, address: string, bdf: string): Promise<void> {
  const admin = adminVfio(shmDir, address);
  try {
    await admin.client.bind({ bdf, variants: undefined }).catch((error: unknown) => {
      if (errnoOf(error) !== 'EBUSY') throw error;
    });
  } finally {
    admin.close();
  }
}

/** An application process driving nvme1 through vfio-pci: its controller up and I/O queue pair 1 in its memory. */
export interface NvmeApp {
  readonly session: RegistrySession;
  readonly clients: VfioClients;
  readonly space: VfioDmaSpace;
  readonly device: VfioDevice;
  readonly driver: NvmeDriver;
  readonly queue: NvmeQueuePair;
  readonly blockSize: number;
  /** Closes the session (the process's exit: its fds close) and the channels. */
  close(): Promise<void>;
}

/**
 * pci-emu (its namespaces in a data directory of the stack's), the registry
 * and vfio-pci, each its own process on one segment directory; pci-emu can
 * be killed and started again on its port and data directory.
 */
export class NvmeStack {
  private constructor(
    readonly shmDir: string,
    readonly dataDir: string,
    public pciEmu: ServiceProcess,
    readonly registry: ServiceProcess,
    public vfioPci: ServiceProcess,
  ) {}

  static async start(): Promise<NvmeStack> {
    const shmDir = tempShmDir();
    const dataDir = fs.mkdtempSync(path.join(os.tmpdir(), 'p2p-nvme-data-'));
    const env = NvmeStack.#env(shmDir, dataDir);
    const { pciEmu, registry } = await startPlatformProcesses(env);
    try {
      const vfioPci = await startServiceProcess('vfio-pci', 'VFIO_PCI', { env: NvmeStack.#vfioEnv(env, pciEmu, registry) });
      return new NvmeStack(shmDir, dataDir, pciEmu, registry, vfioPci);
    } catch (error) {
      await registry.stop('SIGKILL');
      await pciEmu.stop('SIGKILL');
      throw error;
    }
  }

  static #vfioEnv(env: NodeJS.ProcessEnv, pciEmu: ServiceProcess, registry: ServiceProcess): NodeJS.ProcessEnv {
    return { ...env, PCI_EMU_ADDRESS: pciEmu.address, DMABUF_REGISTRY_ADDRESS: registry.address };
  }

  /** vfio-pci killed (SIGKILL) and started again on its old port: every vfio file of every process is gone. */
  async restartVfioPci(): Promise<void> {
    await this.vfioPci.stop('SIGKILL');
    const env = NvmeStack.#vfioEnv(NvmeStack.#env(this.shmDir, this.dataDir), this.pciEmu, this.registry);
    this.vfioPci = await startServiceProcess('vfio-pci', 'VFIO_PCI', { env, port: this.vfioPci.port });
  }

  static #env(shmDir: string, dataDir: string): NodeJS.ProcessEnv {
    return { P2P_SHM_DIR: shmDir, PCI_EMU_DATA_DIR: dataDir, LOG_LEVEL: 'warn' };
  }

  /** pci-emu again, on its old port and the same segment and data directories. */
  async restartPciEmu(): Promise<void> {
    this.pciEmu = await startServiceProcess('pci-emu', 'PCI_EMU', { env: NvmeStack.#env(this.shmDir, this.dataDir), port: this.pciEmu.port });
    // vfio-pci reconnects on its own; until it has, its calls to the hardware fail with EIO.
    await eventually(
      'vfio-pci to reach the restarted pci-emu',
      () => bindToVfio(this.shmDir, this.vfioPci.address, NVME1).then(() => true, (error: unknown) => (errnoOf(error) === 'EIO' ? false : Promise.reject(error))),
      15_000,
    );
  }

  /** pci-emu as its administrator sees it (MmioRead of a BAR register, the IOMMU domains). */
  pciAdmin(): Peer<typeof pci.PciEmuServiceDefinition> {
    return connectPeer(pci.PciEmuServiceDefinition, this.pciEmu.address, { name: 'pci-emu', token: readAdminToken(this.shmDir) });
  }

  /**
   * A process named `name` that binds nvme1 if needed, opens it, brings
   * the controller up (nvme_pci_enable(): whatever state it was left in is
   * reset first) and creates I/O queue pair 1 in its own memory. `opened`
   * runs between the open and the bring-up. With `cpuAccess: 'registry'`
   * the process runs outside the services' tmpfs (a directory of its own):
   * its CPU reaches its DMA memory through the registry.
   */
  async openApp(name: string, opened: (device: VfioDevice) => Promise<void> = async () => undefined, cpuAccess: CpuAccess = 'mmap'): Promise<NvmeApp> {
    await bindToVfio(this.shmDir, this.vfioPci.address, NVME1);
    const ownDir = cpuAccess === 'registry' ? fs.mkdtempSync(path.join(os.tmpdir(), 'p2p-outside-')) : undefined;
    const session = await RegistrySession.open(this.registry.address, { name, shmDir: ownDir ?? this.shmDir });
    const as = { name: 'vfio-pci', token: session.credential };
    const peers = [
      connectPeer(vfio.VfioPciServiceDefinition, this.vfioPci.address, as),
      connectPeer(vfio.VfioDeviceIommufdServiceDefinition, this.vfioPci.address, as),
      connectPeer(iommufd.IommufdServiceDefinition, this.vfioPci.address, as),
    ] as const;
    const close = async (): Promise<void> => {
      for (const peer of peers) peer.close();
      await session.close().catch(() => undefined);
      if (ownDir !== undefined) fs.rmSync(ownDir, { recursive: true, force: true });
    };
    try {
      const clients: VfioClients = { device: peers[0].client, deviceIommufd: peers[1].client, iommufd: peers[2].client };
      const space = await VfioDmaSpace.open(session, clients, { cpuAccess });
      const device = await space.openDevice(NVME1);
      await opened(device);
      const driver = await NvmeDriver.start(device.registers, space);
      const { blockSize } = await driver.identifyNamespace(1);
      const queue = await driver.createIoQueuePair(1, 256);
      return { session, clients, space, device, driver, queue, blockSize, close };
    } catch (error) {
      await close();
      throw error;
    }
  }

  async stop(): Promise<void> {
    for (const service of [this.vfioPci, this.registry, this.pciEmu]) await service.stop('SIGKILL');
    fs.rmSync(this.shmDir, { recursive: true, force: true });
    fs.rmSync(this.dataDir, { recursive: true, force: true });
  }
}
