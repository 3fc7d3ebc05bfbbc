import type { OwnerExtent } from '../owners/file-owner';

/**
 * Byte access to an owner's segments, for the streamed fallback and CPU
 * access. `extents` lay out a whole buffer (its byte 0 is the first extent's
 * first byte); `offset` and `length` address the buffer, and the registry has
 * bounds-checked them against it.
 */
export interface SegmentAccess {
  read(directory: string, extents: readonly OwnerExtent[], offset: number, length: number): Buffer;
  write(directory: string, extents: readonly OwnerExtent[], offset: number, data: Uint8Array): void;
}
