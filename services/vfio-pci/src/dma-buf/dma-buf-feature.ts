import { errno } from '@p2p/errno';
import type { UserBuffer } from '../uapi/user-buffer';
import { checkU32, checkU64 } from '../uapi/u64';
import { VFIO_DMA_BUF_FEATURE_SIZE, VFIO_DMA_BUF_SINGLE_FEATURE_SIZE, VFIO_REGION_DMA_RANGE_SIZE } from '../uapi/vfio';
import type { VfioPciVariants } from '../variants';

/** struct vfio_region_dma_range. */
export interface DmaRange {
  readonly offset: bigint;
  readonly length: bigint;
}

/**
 * The typed form of the VFIO_DEVICE_FEATURE_DMA_BUF argument, encoded to the
 * device's layout before the kernel's code reads it: struct
 * vfio_device_feature_dma_buf for 'ranges', the one-range struct for
 * 'single' (which has no flags or nr_ranges, and takes at most one range).
 */
export interface DmaBufFeature {
  readonly regionIndex: number;
  readonly openFlags: number;
  /** Must be 0; default 0. */
  readonly flags?: number;
  readonly ranges: readonly DmaRange[];
  /** nr_ranges as the caller claims it; default ranges.length. */
  readonly nrRanges?: number;
}

/** The fixed part of struct vfio_device_feature_dma_buf, as copied from the caller. */
export interface DmaBufHeader {
  readonly regionIndex: number;
  readonly openFlags: number;
  readonly flags: number;
  readonly nrRanges: number;
}

/** KMALLOC_MAX_SIZE on x86-64 (1 << (MAX_PAGE_ORDER + PAGE_SHIFT)): the most memdup_user() can allocate. */
export const KMALLOC_MAX_SIZE = 4 * 1024 * 1024;

/** The argument bytes a client's typed request stands for, in `layout`. */
export function encodeDmaBufFeature(feature: DmaBufFeature, layout: VfioPciVariants['dmaBufLayout']): Uint8Array {
  const regionIndex = checkU32(feature.regionIndex, 'region_index');
  const openFlags = checkU32(feature.openFlags, 'open_flags');
  if (layout === 'single') {
    if (feature.ranges.length > 1) {
      throw errno('EINVAL', `the single-range DMA_BUF argument holds one range, not ${feature.ranges.length}`);
    }
    const range = feature.ranges[0] ?? { offset: 0n, length: 0n };
    const view = new DataView(new ArrayBuffer(VFIO_DMA_BUF_SINGLE_FEATURE_SIZE));
    view.setUint32(0, regionIndex, true);
    view.setUint32(4, openFlags, true);
    view.setBigUint64(8, checkU64(range.offset, 'offset'), true);
    view.setBigUint64(16, checkU64(range.length, 'length'), true);
    return new Uint8Array(view.buffer);
  }
  const view = new DataView(new ArrayBuffer(VFIO_DMA_BUF_FEATURE_SIZE + feature.ranges.length * VFIO_REGION_DMA_RANGE_SIZE));
  view.setUint32(0, regionIndex, true);
  view.setUint32(4, openFlags, true);
  view.setUint32(8, checkU32(feature.flags ?? 0, 'flags'), true);
  view.setUint32(12, checkU32(feature.nrRanges ?? feature.ranges.length, 'nr_ranges'), true);
  feature.ranges.forEach((range, i) => {
    const at = VFIO_DMA_BUF_FEATURE_SIZE + i * VFIO_REGION_DMA_RANGE_SIZE;
    view.setBigUint64(at, checkU64(range.offset, 'offset'), true);
    view.setBigUint64(at + 8, checkU64(range.length, 'length'), true);
  });
  return new Uint8Array(view.buffer);
}

/** copy_from_user(&get_dma_buf, arg, sizeof(get_dma_buf)). */
export function copyDmaBufHeader(data: UserBuffer): DmaBufHeader {
  const view = data.copy(0, VFIO_DMA_BUF_FEATURE_SIZE, 'struct vfio_device_feature_dma_buf');
  return {
    regionIndex: view.getUint32(0, true),
    openFlags: view.getUint32(4, true),
    flags: view.getUint32(8, true),
    nrRanges: view.getUint32(12, true),
  };
}

/**
 * memdup_array_user(&arg->dma_ranges, nr_ranges, sizeof(*dma_ranges)):
 * ENOMEM past what kmalloc can give, EFAULT when the ranges are not all in
 * the caller's buffer. (Its EOVERFLOW for n * size overflowing size_t cannot
 * happen: nr_ranges is a u32 and size_t has 64 bits.)
 */
export function copyDmaRanges(data: UserBuffer, nrRanges: number): DmaRange[] {
  const bytes = nrRanges * VFIO_REGION_DMA_RANGE_SIZE;
  if (bytes > KMALLOC_MAX_SIZE) {
    throw errno('ENOMEM', `${nrRanges} ranges need ${bytes} bytes, more than KMALLOC_MAX_SIZE (${KMALLOC_MAX_SIZE})`);
  }
  const view = data.copy(VFIO_DMA_BUF_FEATURE_SIZE, bytes, `${nrRanges} struct vfio_region_dma_range`);
  return Array.from({ length: nrRanges }, (_, i) => ({
    offset: view.getBigUint64(i * VFIO_REGION_DMA_RANGE_SIZE, true),
    length: view.getBigUint64(i * VFIO_REGION_DMA_RANGE_SIZE + 8, true),
  }));
}

/** The single-range struct of the 'single' layout, copied whole. */
export function copySingleDmaBuf(data: UserBuffer): { regionIndex: number; openFlags: number; range: DmaRange } {
  const view = data.copy(0, VFIO_DMA_BUF_SINGLE_FEATURE_SIZE, 'the single-range struct vfio_device_feature_dma_buf');
  return {
    regionIndex: view.getUint32(0, true),
    openFlags: view.getUint32(4, true),
    range: { offset: view.getBigUint64(8, true), length: view.getBigUint64(16, true) },
  };
}
