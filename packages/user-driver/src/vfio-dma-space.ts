import type { RegistrySession } from '@p2p/dmabuf-client';
import type { iommufd, vfio } from '@p2p/proto';
import type { Peer } from '@p2p/rpc';
import { iommufdUapi, pciRegs, vfioUapi } from '@p2p/vfio-pci';
import type { DmaAllocator, DmaBuffer, NvmeRegisterPort } from './nvme-driver';
import { NVME_PAGE } from './nvme-driver';
import { cpuView } from './cpu-view';
import { u32, u64 } from './dma-engine';

/*
 * What a user-space driver process has through vfio-pci, as SPDK's
 * env_dpdk has it: device fds, one iommufd IOAS that every device it owns
 * is attached to, and DMA memory (heap buffers it mmaps and maps into the
 * IOAS at IOVAs it picks).
 */

const { PCI_COMMAND, PCI_COMMAND_MEMORY, PCI_COMMAND_MASTER, PCI_BASE_ADDRESS_0 } = pciRegs;
const { VFIO_PCI_BAR0_REGION_INDEX, VFIO_PCI_CONFIG_REGION_INDEX } = vfioUapi;
const { IOMMU_IOAS_MAP_FIXED_IOVA, IOMMU_IOAS_MAP_READABLE, IOMMU_IOAS_MAP_WRITEABLE } = iommufdUapi;
const MAP_RW = IOMMU_IOAS_MAP_FIXED_IOVA | IOMMU_IOAS_MAP_READABLE | IOMMU_IOAS_MAP_WRITEABLE;

export interface VfioClients {
  readonly device: Peer<typeof vfio.VfioPciServiceDefinition>['client'];
  readonly deviceIommufd: Peer<typeof vfio.VfioDeviceIommufdServiceDefinition>['client'];
  readonly iommufd: Peer<typeof iommufd.IommufdServiceDefinition>['client'];
}

/**
 * PCI_COMMAND of the device behind `deviceFd`, written through vfio-pci's
 * config region as a driver does (pci_enable_device sets MEMORY, pci_set_master
 * MASTER). Clearing MEMORY revokes the device's dma-bufs: the write returns
 * once every importer stopped (vfio_pci_core_write() -> vfio_pci_dma_buf_move()).
 */
export async function writePciCommand(device: VfioClients['device'], pid: number, deviceFd: number, value: number): Promise<void> {
  const data = Buffer.alloc(2);
  data.writeUInt16LE(value);
  await device.regionWrite({ pid, deviceFd, index: VFIO_PCI_CONFIG_REGION_INDEX, offset: BigInt(PCI_COMMAND), data });
}

/** A device the process opened and attached to its IOAS. */
export interface VfioDevice {
  readonly bdf: string;
  readonly fd: number;
  /** BAR0 through vfio-pci's region. */
  readonly registers: NvmeRegisterPort;
  /** The bus address of BAR `index`, from the BAR registers in config space (vfio's virtual BARs). */
  barAddress(index: number): Promise<bigint>;
}

/**
 * How the process's CPU reaches its DMA memory: `mmap`, the heap buffer's
 * segment mapped here (loads and stores, coherent with the device); or
 * `registry`, a copy in this process synced through the registry's
 * CpuRead and CpuWrite, for a process that cannot map the services'
 * segments (it runs outside their tmpfs, as a campaign against compose does).
 */
export type CpuAccess = 'mmap' | 'registry';

export interface VfioDmaSpaceOptions {
  /** DMA memory goes from here up; default 4 GiB. */
  readonly firstIova?: bigint;
  /** Default `mmap`. */
  readonly cpuAccess?: CpuAccess;
}

/** One process's iommufd IOAS and the DMA memory it maps there. */
export class VfioDmaSpace implements DmaAllocator {
  #nextIova: bigint;
  /** What allocate() made: unmapped and closed by close(). */
  readonly #heaps: { fd: number; addr: bigint; length: number }[] = [];

  private constructor(
    readonly session: RegistrySession,
    readonly clients: VfioClients,
    readonly ictx: number,
    readonly ioasId: number,
    firstIova: bigint,
    readonly cpuAccess: CpuAccess,
  ) {
    this.#nextIova = firstIova;
  }

  /** /dev/iommu and a new IOAS. */
  static async open(session: RegistrySession, clients: VfioClients, options: VfioDmaSpaceOptions = {}): Promise<VfioDmaSpace> {
    const { fd: ictx } = await clients.iommufd.openIommufd({ pid: session.pid });
    const { outIoasId } = await clients.iommufd.ioasAlloc({ pid: session.pid, fd: ictx, flags: 0 });
    return new VfioDmaSpace(session, clients, ictx, outIoasId, options.firstIova ?? 0x1_0000_0000n, options.cpuAccess ?? 'mmap');
  }

  get pid(): number {
    return this.session.pid;
  }

  /** A heap buffer, mmapped, and mapped into the IOAS at the next free IOVA. */
  async allocate(bytes: number): Promise<DmaBuffer> {
    const length = Math.ceil(bytes / NVME_PAGE) * NVME_PAGE;
    const { fd } = await this.session.heapAllocate(length);
    const mapped = await this.session.mmapFd(fd, 0, length);
    this.#heaps.push({ fd, addr: mapped.addr, length });
    const address = this.#nextIova;
    this.#nextIova += BigInt(length);
    await this.clients.iommufd.ioasMap({ pid: this.pid, fd: this.ictx, flags: MAP_RW, ioasId: this.ioasId, reserved: 0, userVa: mapped.addr, length: BigInt(length), iova: address });
    return this.cpuAccess === 'mmap' ? { address, view: cpuView(mapped) } : this.#copied(fd, address, length);
  }

  /** A heap buffer the CPU reaches through a copy: CpuWrite and CpuRead of the dma-buf `fd`. */
  #copied(fd: number, address: bigint, length: number): DmaBuffer {
    const view = Buffer.alloc(length);
    const bounds = (offset: number, count: number): void => {
      if (!Number.isInteger(offset) || !Number.isInteger(count) || offset < 0 || count < 0 || offset + count > length) {
        throw new RangeError(`a sync of [${offset}, ${offset + count}) outside a ${length}-byte buffer`);
      }
    };
    return {
      address,
      view,
      syncForDevice: async (offset, count) => {
        bounds(offset, count);
        if (count > 0) await this.session.cpuWrite(fd, BigInt(offset), view.subarray(offset, offset + count));
      },
      syncForCpu: async (offset, count) => {
        bounds(offset, count);
        if (count > 0) (await this.session.cpuRead(fd, BigInt(offset), BigInt(count))).copy(view, offset);
      },
    };
  }

  /**
   * Closes /dev/iommu (the IOAS and its mappings go with it) and every
   * heap buffer allocate() made, unmapped first, for a process that lives
   * on. The devices attached to the IOAS must be closed before.
   */
  async close(): Promise<void> {
    await this.session.closeFd(this.ictx);
    for (const heap of this.#heaps.splice(0)) {
      await this.session.munmap(heap.addr, heap.length);
      await this.session.closeFd(heap.fd);
    }
  }

  /** An fd (a dma-buf of device memory) mapped into the IOAS with IOMMU_IOAS_MAP_FILE at the next free IOVA; its IOVA. */
  async mapFile(fd: number, length: number): Promise<bigint> {
    const iova = this.#nextIova;
    this.#nextIova += BigInt(Math.ceil(length / NVME_PAGE) * NVME_PAGE);
    await this.clients.iommufd.ioasMapFile({ pid: this.pid, fd: this.ictx, flags: MAP_RW, ioasId: this.ioasId, mapFd: fd, start: 0n, length: BigInt(length), iova });
    return iova;
  }

  /**
   * Opens `bdf` through vfio-pci, enables memory decode and bus mastering
   * (pci_enable_device(), pci_set_master()), binds it to this process's
   * iommufd and attaches it to the IOAS.
   */
  async openDevice(bdf: string): Promise<VfioDevice> {
    const { device, deviceIommufd } = this.clients;
    const pid = this.pid;
    const { fd } = await device.openDevice({ pid, bdf });
    await writePciCommand(device, pid, fd, PCI_COMMAND_MEMORY | PCI_COMMAND_MASTER);
    await deviceIommufd.bindIommufd({ pid, deviceFd: fd, flags: 0, iommufd: this.ictx });
    await deviceIommufd.attachIommufdPt({ pid, deviceFd: fd, flags: 0, ptId: this.ioasId, pasid: 0 });
    const region = (offset: number, count: number): Promise<Buffer> =>
      device.regionRead({ pid, deviceFd: fd, index: VFIO_PCI_BAR0_REGION_INDEX, offset: BigInt(offset), count }).then(({ data }) => data);
    const write = (offset: number, data: Buffer): Promise<unknown> => device.regionWrite({ pid, deviceFd: fd, index: VFIO_PCI_BAR0_REGION_INDEX, offset: BigInt(offset), data });
    const registers: NvmeRegisterPort = {
      read32: async (offset) => (await region(offset, 4)).readUInt32LE(0),
      read64: async (offset) => (await region(offset, 8)).readBigUInt64LE(0),
      write32: async (offset, value) => void (await write(offset, u32(value >>> 0))),
      write64: async (offset, value) => void (await write(offset, u64(value))),
    };
    const barAddress = async (index: number): Promise<bigint> => {
      const { data } = await device.regionRead({ pid, deviceFd: fd, index: VFIO_PCI_CONFIG_REGION_INDEX, offset: BigInt(PCI_BASE_ADDRESS_0 + 4 * index), count: 8 });
      return data.readBigUInt64LE(0) & ~0xfn;
    };
    return { bdf, fd, registers, barAddress };
  }
}
