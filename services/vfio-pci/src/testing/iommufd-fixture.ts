import type { IoasMapCmd, IoasMapFileCmd } from '../iommufd/ioas-ioctls';
import type { IommufdNode } from '../iommufd/iommufd-ctx';
import { IOMMU_IOAS_MAP_FIXED_IOVA, IOMMU_IOAS_MAP_READABLE, IOMMU_IOAS_MAP_WRITEABLE } from '../uapi/iommufd';
import { FN0, harness, type Harness, MiB, NVME, PAGE, PID } from './harness';

export const RW = IOMMU_IOAS_MAP_READABLE | IOMMU_IOAS_MAP_WRITEABLE;
export const FIXED = IOMMU_IOAS_MAP_FIXED_IOVA;
/** Where the process has 1 MiB of ordinary memory mapped. */
export const VA = 0x7f00_0000_0000n;
/** An IOVA clear of everything reserved. */
export const IOVA = 0x10_0000n;
/** The function whose DMA the tests map for (a memory BAR0 on bus 05). */
export const DMA_DEVICE = FN0;
/** The exporter of the tests' dma-bufs: NVME's 4 MiB memory BAR2 (bus address 0x38_0000_0000). */
export const EXPORTER = NVME;

export interface IommufdHarness extends Harness {
  /** The process's iommufd. */
  readonly ictx: number;
  /** An IOAS in it. */
  readonly ioas: number;
  /** DMA_DEVICE opened by the process (a legacy device file, not bound). */
  readonly dev: number;
  /** IOMMU_IOAS_MAP of the process's memory, FIXED at IOVA and READ|WRITE unless `cmd` says otherwise. */
  map(cmd?: Partial<IoasMapCmd>, ictx?: number): Promise<bigint>;
  /** IOMMU_IOAS_MAP_FILE of `fd`, FIXED at IOVA and READ|WRITE unless `cmd` says otherwise. */
  mapFile(fd: number, cmd?: Partial<IoasMapFileCmd>): Promise<bigint>;
  /** IOMMU_IOAS_UNMAP. */
  unmap(iova: bigint, length: bigint, ioasId?: number): Promise<bigint>;
  /** Binds `fd` (default: dev) to the iommufd and attaches it to `ptId` (default: the IOAS); the HWPT id. */
  attach(fd?: number, ptId?: number): Promise<number>;
  /** NVME opened by the process and a dma-buf of [offset, +length) of its BAR2: [device fd, dma-buf fd]. */
  exportCmb(offset?: bigint, length?: bigint): Promise<[number, number]>;
}

/** The harness with DMA_DEVICE open, an iommufd (or container) with an IOAS, and VA mapped. */
export async function iommufdHarness(node: IommufdNode = 'iommu'): Promise<IommufdHarness> {
  const h = harness();
  const dev = await h.open(DMA_DEVICE);
  const ictx = await h.vfio.iommufd.open(PID, node);
  const ioas = await h.vfio.iommufd.ioasAlloc(PID, ictx, 0);
  h.memory.mmap(PID, VA, MiB);
  let exporterFd: number | undefined;
  return {
    ...h,
    ictx,
    ioas,
    dev,
    map: (cmd = {}, onCtx = ictx) =>
      h.vfio.iommufd.ioasMap(PID, onCtx, { flags: RW | FIXED, ioasId: ioas, reserved: 0, userVa: VA, length: PAGE, iova: IOVA, ...cmd }),
    mapFile: (fd, cmd = {}) => h.vfio.iommufd.ioasMapFile(PID, ictx, { flags: RW | FIXED, ioasId: ioas, fd, start: 0n, length: PAGE, iova: IOVA, ...cmd }),
    unmap: (iova, length, ioasId = ioas) => h.vfio.iommufd.ioasUnmap(PID, ictx, { ioasId, iova, length }),
    async attach(fd = dev, ptId = ioas) {
      await h.vfio.bindIommufd(PID, fd, { flags: 0, iommufd: ictx });
      return h.vfio.attachIommufdPt(PID, fd, { flags: 0, ptId, pasid: 0 });
    },
    async exportCmb(offset = 0n, length = 4n * PAGE) {
      if (exporterFd === undefined) {
        await h.vfio.bind(EXPORTER);
        exporterFd = await h.vfio.openDevice(PID, EXPORTER);
      }
      return [exporterFd, await h.exportBuf(exporterFd, 2, [{ offset, length }])];
    },
  };
}
