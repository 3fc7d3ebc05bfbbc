import { errno } from '@p2p/errno';
import { IOMMU_READ, IOMMU_WRITE } from '../ports/iommu-port';
import { hex, PAGE_SIZE, U32_MAX, U64_MAX } from '../uapi/u64';
import {
  VFIO_API_VERSION,
  VFIO_DMA_CC_IOMMU,
  VFIO_DMA_MAP_FLAG_READ,
  VFIO_DMA_MAP_FLAG_WRITE,
  VFIO_DMA_MAP_MINSZ,
  VFIO_DMA_UNMAP_FLAG_ALL,
  VFIO_DMA_UNMAP_MINSZ,
  VFIO_IOMMU_INFO_CAPS,
  VFIO_IOMMU_INFO_MINSZ,
  VFIO_IOMMU_INFO_PGSIZES,
  VFIO_IOMMU_INFO_SIZE,
  VFIO_IOMMU_TYPE1_INFO_CAP_IOVA_RANGE,
  VFIO_IOMMU_TYPE1_INFO_CAP_IOVA_RANGE_HEADER_SIZE,
  VFIO_IOMMU_TYPE1_INFO_DMA_AVAIL,
  VFIO_IOMMU_TYPE1_INFO_DMA_AVAIL_SIZE,
  VFIO_IOVA_RANGE_SIZE,
  VFIO_TYPE1_IOMMU,
  VFIO_TYPE1v2_IOMMU,
  VFIO_UNMAP_ALL,
} from '../uapi/vfio';
import { allocUserPages } from './ioas-ioctls';
import type { IommufdCtx } from './iommufd-ctx';
import type { IovaRange } from './iova-range';
import type { Ioas } from './objects';

/*
 * The VFIO type1 container ioctls as iommufd's compatibility layer serves
 * them (drivers/iommu/iommufd/vfio_compat.c) on the context's compat IOAS:
 * the one VFIO_GROUP_SET_CONTAINER made (or IOMMU_VFIO_IOAS set). Where the
 * compat layer answers differently from the real type1 driver, the compat
 * layer's answer is the model's: MAP_DMA takes flags 0 (a mapping nothing
 * may use), has no dma_avail limit and refuses VADDR; an unmap that only
 * partly covers a mapping is ENOENT, not EINVAL (TYPE1v2), and an empty one
 * succeeds with size 0; GET_INFO always sets CAPS and puts DMA_AVAIL
 * (U32_MAX) before IOVA_RANGE; GET_DIRTY_BITMAP and UPDATE_VADDR are not
 * there (EINVAL, and 0 from CHECK_EXTENSION).
 */

/** struct vfio_iommu_type1_dma_map. */
export interface MapDmaCmd {
  readonly argsz: number;
  readonly flags: number;
  readonly vaddr: bigint;
  readonly iova: bigint;
  readonly size: bigint;
}

/** struct vfio_iommu_type1_dma_unmap (no bitmap: GET_DIRTY_BITMAP is refused). */
export interface UnmapDmaCmd {
  readonly argsz: number;
  readonly flags: number;
  readonly iova: bigint;
  readonly size: bigint;
}

/** A capability of struct vfio_iommu_type1_info as written to the caller's buffer. */
export type IommuInfoCap =
  | { readonly id: typeof VFIO_IOMMU_TYPE1_INFO_DMA_AVAIL; readonly offset: number; readonly next: number; readonly avail: number }
  | {
      readonly id: typeof VFIO_IOMMU_TYPE1_INFO_CAP_IOVA_RANGE;
      readonly offset: number;
      readonly next: number;
      readonly nrIovas: number;
      /** The ranges that fit in argsz, inclusive. */
      readonly ranges: readonly IovaRange[];
    };

/** struct vfio_iommu_type1_info as written back, and the capabilities that fit. */
export interface IommuInfo {
  /** The size every capability needs: call again with it if it is more than you gave. */
  readonly argsz: number;
  readonly flags: number;
  readonly iovaPgsizes: bigint;
  /** 24 when every capability fit, else 0. */
  readonly capOffset: number;
  readonly caps: readonly IommuInfoCap[];
}

/** VFIO_GET_API_VERSION. */
export function vfioGetApiVersion(): number {
  return VFIO_API_VERSION;
}

/**
 * VFIO_CHECK_EXTENSION (iommufd_vfio_check_extension()): TYPE1, TYPE1v2
 * and UNMAP_ALL 1; DMA_CC_IOMMU 1 when every domain of the compat IOAS
 * enforces cache coherency (all of the platform's do; ENODEV with no compat
 * IOAS); NOIOMMU 0 (no CONFIG_VFIO_NOIOMMU); anything else 0.
 */
export function vfioCheckExtension(ictx: IommufdCtx, extension: number): number {
  switch (extension) {
    case VFIO_TYPE1_IOMMU:
    case VFIO_TYPE1v2_IOMMU:
    case VFIO_UNMAP_ALL:
      return 1;
    case VFIO_DMA_CC_IOMMU:
      compatIoas(ictx);
      return 1;
    default:
      return 0;
  }
}

/**
 * VFIO_SET_IOMMU (iommufd_vfio_set_iommu()): a type other than TYPE1 and
 * TYPE1v2 EINVAL; no compat IOAS (no group joined) ENODEV; TYPE1 disables
 * large pages so a later unmap may punch holes (EINVAL once domains hold
 * areas). May be called again.
 */
export function vfioSetIommu(ictx: IommufdCtx, type: number): void {
  if (type !== VFIO_TYPE1_IOMMU && type !== VFIO_TYPE1v2_IOMMU) throw errno('EINVAL', `IOMMU type ${type}: only TYPE1 (1) and TYPE1v2 (3)`);
  const ioas = compatIoas(ictx);
  if (type === VFIO_TYPE1_IOMMU) ioas.iopt.disableLargePages();
}

/**
 * VFIO_IOMMU_GET_INFO (iommufd_vfio_iommu_get_info()): argsz below 16
 * EINVAL; no compat IOAS ENODEV. The page sizes the domains share (PAGE_SIZE
 * at least); the capability chain at 24, DMA_AVAIL then IOVA_RANGE, each
 * written only as far as argsz reaches; argsz comes back as the size the
 * whole chain needs.
 */
export function vfioIommuGetInfo(ictx: IommufdCtx, argsz: number): IommuInfo {
  if (argsz < VFIO_IOMMU_INFO_MINSZ) throw errno('EINVAL', `argsz ${argsz} is below ${VFIO_IOMMU_INFO_MINSZ}`);
  const ioas = compatIoas(ictx);
  const caps: IommuInfoCap[] = [];
  let total = VFIO_IOMMU_INFO_SIZE;
  let previous: { index: number } | undefined;
  const chain = (offset: number, size: number, cap: IommuInfoCap | undefined): void => {
    // The previous capability's next is patched only if argsz reaches this one's start.
    if (previous !== undefined && argsz >= offset) caps[previous.index] = { ...caps[previous.index]!, next: offset };
    previous = cap === undefined ? undefined : { index: caps.push(cap) - 1 };
    total = offset + align8(size);
  };

  const availOffset = total;
  const room = (offset: number): number => (argsz > offset ? argsz - offset : 0);
  chain(
    availOffset,
    VFIO_IOMMU_TYPE1_INFO_DMA_AVAIL_SIZE,
    room(availOffset) >= VFIO_IOMMU_TYPE1_INFO_DMA_AVAIL_SIZE ? { id: VFIO_IOMMU_TYPE1_INFO_DMA_AVAIL, offset: availOffset, next: 0, avail: U32_MAX } : undefined,
  );

  const rangesOffset = total;
  const ranges = ioas.iopt.iovaRanges();
  const fitting = ranges.filter((_, i) => VFIO_IOMMU_TYPE1_INFO_CAP_IOVA_RANGE_HEADER_SIZE + (i + 1) * VFIO_IOVA_RANGE_SIZE <= room(rangesOffset));
  chain(
    rangesOffset,
    VFIO_IOMMU_TYPE1_INFO_CAP_IOVA_RANGE_HEADER_SIZE + ranges.length * VFIO_IOVA_RANGE_SIZE,
    room(rangesOffset) >= VFIO_IOMMU_TYPE1_INFO_CAP_IOVA_RANGE_HEADER_SIZE
      ? { id: VFIO_IOMMU_TYPE1_INFO_CAP_IOVA_RANGE, offset: rangesOffset, next: 0, nrIovas: ranges.length, ranges: fitting }
      : undefined,
  );

  return {
    argsz: total,
    flags: VFIO_IOMMU_INFO_PGSIZES | VFIO_IOMMU_INFO_CAPS,
    iovaPgsizes: pageSizes(ioas),
    capOffset: argsz >= total ? VFIO_IOMMU_INFO_SIZE : 0,
    caps,
  };
}

/**
 * VFIO_IOMMU_MAP_DMA (iommufd_vfio_map_dma()): argsz below 32 or flags
 * other than READ|WRITE EINVAL (VADDR included); no compat IOAS ENODEV;
 * then iopt_map_user_pages() at the fixed IOVA: vaddr + size overflowing
 * EOVERFLOW, size 0 EINVAL, off the alignment EINVAL, overflow EOVERFLOW,
 * a reserved range EINVAL, an existing mapping EEXIST, pinning errors.
 */
export async function vfioIommuMapDma(ictx: IommufdCtx, pid: number, cmd: MapDmaCmd): Promise<void> {
  if (cmd.argsz < VFIO_DMA_MAP_MINSZ || (cmd.flags & ~(VFIO_DMA_MAP_FLAG_READ | VFIO_DMA_MAP_FLAG_WRITE)) !== 0) {
    throw errno('EINVAL', `argsz ${cmd.argsz} below ${VFIO_DMA_MAP_MINSZ}, or flags ${hex(cmd.flags)} other than READ|WRITE`);
  }
  const prot = ((cmd.flags & VFIO_DMA_MAP_FLAG_READ) !== 0 ? IOMMU_READ : 0) | ((cmd.flags & VFIO_DMA_MAP_FLAG_WRITE) !== 0 ? IOMMU_WRITE : 0);
  const ioas = compatIoas(ictx);
  const pages = allocUserPages(ictx, pid, cmd.vaddr, cmd.size, (prot & IOMMU_WRITE) !== 0);
  await ioas.iopt.mapPages([{ pages, startByte: pages.startByte, length: cmd.size }], cmd.size, cmd.iova, prot, cmd.vaddr);
}

/**
 * VFIO_IOMMU_UNMAP_DMA (iommufd_vfio_unmap_dma()): argsz below 24 or
 * flags other than ALL EINVAL; no compat IOAS ENODEV; ALL with an iova or
 * size EINVAL. After VFIO_SET_IOMMU(TYPE1) the mappings are first cut at
 * the range's ends (a dma-buf's cannot be: EOPNOTSUPP). Then size 0
 * EINVAL, overflow EOVERFLOW, a mapping only partly covered ENOENT (the
 * bytes unmapped before it stay unmapped; the message says how many). An
 * empty range unmaps 0 bytes, successfully. Returns the bytes unmapped.
 */
export async function vfioIommuUnmapDma(ictx: IommufdCtx, cmd: UnmapDmaCmd): Promise<bigint> {
  if (cmd.argsz < VFIO_DMA_UNMAP_MINSZ || (cmd.flags & ~VFIO_DMA_UNMAP_FLAG_ALL) !== 0) {
    throw errno('EINVAL', `argsz ${cmd.argsz} below ${VFIO_DMA_UNMAP_MINSZ}, or flags ${hex(cmd.flags)} other than ALL`);
  }
  const ioas = compatIoas(ictx);
  if ((cmd.flags & VFIO_DMA_UNMAP_FLAG_ALL) !== 0) {
    if (cmd.iova !== 0n || cmd.size !== 0n) throw errno('EINVAL', 'UNMAP_ALL takes iova 0 and size 0');
    return ioas.iopt.unmapAll();
  }
  if (ioas.iopt.largePagesDisabled) {
    // The last byte of the range, and the byte before it (unless it starts at 0), become ends of areas.
    const cuts = [(cmd.iova + cmd.size - 1n) & U64_MAX, ...(cmd.iova !== 0n ? [cmd.iova - 1n] : [])];
    await ioas.iopt.cutIova(cuts);
  }
  if (cmd.size === 0n) throw errno('EINVAL', 'size is 0');
  const last = cmd.iova + cmd.size - 1n;
  if (last > U64_MAX) throw errno('EOVERFLOW', `iova ${hex(cmd.iova)} + size ${hex(cmd.size)} overflows`);
  return ioas.iopt.unmapRange(cmd.iova, last);
}

/** get_compat_ioas(): ENODEV without one. */
function compatIoas(ictx: IommufdCtx): Ioas {
  if (ictx.vfioIoas === undefined) throw errno('ENODEV', 'the container has no IOAS: no group has joined it (VFIO_GROUP_SET_CONTAINER)');
  return ictx.vfioIoas;
}

/**
 * iommufd_get_pagesizes(): the page sizes every domain of the IOAS has
 * (all of them with none), those below PAGE_SIZE folded into PAGE_SIZE,
 * and at least the IOVA alignment.
 */
function pageSizes(ioas: Ioas): bigint {
  let bitmap = ioas.hwpts.size === 0 ? U64_MAX : PAGE_SIZE;
  if ((bitmap & (PAGE_SIZE - 1n)) !== 0n) bitmap = (bitmap & ~(PAGE_SIZE - 1n) & U64_MAX) | PAGE_SIZE;
  return bitmap > ioas.iopt.iovaAlignment ? bitmap : ioas.iopt.iovaAlignment;
}

function align8(size: number): number {
  return (size + 7) & ~7;
}
