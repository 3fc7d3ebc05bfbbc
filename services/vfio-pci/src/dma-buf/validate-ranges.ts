import { errno } from '@p2p/errno';
import { checkAddOverflow, hex, isPageAligned } from '../uapi/u64';
import type { DmaRange } from './dma-buf-feature';

/** include/linux/dma-mapping.h: the top bit of a dma_iova_state size, which a buffer's length must leave clear. */
export const DMA_IOVA_USE_SWIOTLB = 1n << 63n;

/**
 * validate_dmabuf_input(): every range non-empty with page-aligned offset and
 * length, the lengths' sum fitting a size_t and clear of
 * DMA_IOVA_USE_SWIOTLB. Returns the buffer's size (the ranges end to end).
 */
export function validateDmaBufInput(ranges: readonly DmaRange[]): bigint {
  let length = 0n;
  ranges.forEach((range, i) => {
    if (range.length === 0n || !isPageAligned(range.offset) || !isPageAligned(range.length)) {
      throw errno(
        'EINVAL',
        `dma range ${i} (offset ${hex(range.offset)}, length ${hex(range.length)}) is empty or not page aligned`,
      );
    }
    const sum = checkAddOverflow(length, range.length);
    if (sum === undefined) {
      throw errno('EINVAL', `the lengths of the dma ranges overflow 64 bits at range ${i}`);
    }
    length = sum;
  });
  if ((length & DMA_IOVA_USE_SWIOTLB) !== 0n) {
    throw errno('EINVAL', `a buffer of ${hex(length)} bytes is too large (DMA_IOVA_USE_SWIOTLB)`);
  }
  return length;
}
