import { errno } from '@p2p/errno';
import { isValidSegmentName } from '@p2p/shm';
import type { OwnerExtent } from '../owners/file-owner';

/**
 * Checks that an owner's answer describes a buffer of `size` bytes: valid
 * segment names (nothing outside the owner's directory), whole non-negative
 * numbers, lengths adding up to the size. Anything else is the exporter's
 * bug, EIO, as a bad sg_table from an exporter would be.
 */
export function checkExtents(extents: readonly OwnerExtent[], size: number, what: string): OwnerExtent[] {
  if (!Array.isArray(extents)) throw errno('EIO', `${what}: the exporter returned no extent list`);
  let total = 0;
  for (const extent of extents) {
    if (!isValidSegmentName(extent.segment)) {
      throw errno('EIO', `${what}: the exporter named segment ${JSON.stringify(extent.segment)}`);
    }
    if (!isWhole(extent.segmentOffset) || !isWhole(extent.length) || extent.length === 0) {
      throw errno('EIO', `${what}: extent of ${extent.segment} at ${extent.segmentOffset} with length ${extent.length}`);
    }
    if (typeof extent.dmaAddress !== 'bigint' || extent.dmaAddress < 0n) {
      throw errno('EIO', `${what}: extent of ${extent.segment} has DMA address ${String(extent.dmaAddress)}`);
    }
    total += extent.length;
  }
  if (total !== size) throw errno('EIO', `${what}: the exporter's extents cover ${total} bytes of a ${size}-byte buffer`);
  return [...extents];
}

/** EINVAL unless [offset, offset+length) are whole numbers within a buffer of `size` bytes. */
export function checkBufferRange(offset: number, length: number, size: number, what: string): void {
  if (!isWhole(offset) || !isWhole(length)) {
    throw errno('EINVAL', `${what}: offset ${offset} and length ${length} must be non-negative integers`);
  }
  if (offset + length > size) {
    throw errno('EINVAL', `${what}: [${offset}, ${offset + length}) runs past the end of the ${size}-byte buffer`);
  }
}

/**
 * The pieces of bytes [offset, offset+length) of a buffer laid out by
 * `extents` (the first extent is the buffer's byte 0), in order, with their
 * DMA addresses advanced to match. The range must lie within the extents.
 */
export function sliceExtents(extents: readonly OwnerExtent[], offset: number, length: number): OwnerExtent[] {
  const pieces: OwnerExtent[] = [];
  const end = offset + length;
  let start = 0;
  for (const extent of extents) {
    const stop = start + extent.length;
    const from = Math.max(offset, start);
    const to = Math.min(end, stop);
    if (from < to) {
      const skip = from - start;
      pieces.push({
        segment: extent.segment,
        segmentOffset: extent.segmentOffset + skip,
        length: to - from,
        dmaAddress: extent.dmaAddress + BigInt(skip),
      });
    }
    if (stop >= end) break;
    start = stop;
  }
  return pieces;
}

function isWhole(value: number): boolean {
  return Number.isSafeInteger(value) && value >= 0;
}
