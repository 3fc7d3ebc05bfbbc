import { errno } from '@p2p/errno';
import type { dmabuf } from '@p2p/proto';
import type { Segment, SegmentStore } from '@p2p/shm';
import { toSafeNumber } from './u64';

/**
 * One extent of a mapping: `view` is the shared memory behind bytes
 * [offset, offset + view.length) of the buffer, which is bytes
 * [segmentOffset, ...) of segment file `segment`.
 */
interface Piece {
  readonly offset: number;
  readonly view: Buffer;
  readonly segment: string;
  readonly segmentOffset: number;
}

/**
 * An importer's CPU mapping of a dma-buf: the extents' segment files opened
 * from this process's own segment directory and the pages of each extent
 * mapped MAP_SHARED (Segment.window: just those pages, not the whole file, as
 * a device maps only what the sg_table names), one Buffer view per extent, in
 * buffer order. Copies in and out are one memcpy per extent touched, straight
 * between the caller's buffer and the views.
 *
 * close() drops every view: the importer's equivalent of unmapping its
 * sg_table in ib_umem_dmabuf_unmap_pages(). mmap-io cannot munmap, so the
 * memory itself goes when V8 collects the views; nothing here touches it
 * after close().
 */
export class SharedMapping {
  #pieces: readonly Piece[];
  readonly #segments: readonly Segment[];

  private constructor(pieces: Piece[], segments: Segment[]) {
    this.#pieces = pieces;
    this.#segments = segments;
  }

  /**
   * Opens and maps `extents` from `store`. They must cover exactly `size`
   * bytes (EIO otherwise: the registry and the importer disagree on the
   * buffer). Segments named by several extents are opened once.
   */
  static open(store: SegmentStore, extents: readonly dmabuf.Extent[], size: number): SharedMapping {
    const segments = new Map<string, Segment>();
    try {
      const pieces: Piece[] = [];
      let offset = 0;
      for (const extent of extents) {
        const length = toSafeNumber(extent.length, `length of an extent in ${extent.segment}`);
        if (length === 0) continue;
        let segment = segments.get(extent.segment);
        if (segment === undefined) {
          segment = store.open(extent.segment);
          segments.set(extent.segment, segment);
        }
        const segmentOffset = toSafeNumber(extent.segmentOffset, `offset in ${extent.segment}`);
        pieces.push({ offset, view: segment.window(segmentOffset, length), segment: extent.segment, segmentOffset });
        offset += length;
      }
      if (offset !== size) throw errno('EIO', `the mapping's extents cover ${offset} bytes of a ${size}-byte buffer`);
      return new SharedMapping(pieces, [...segments.values()]);
    } catch (error) {
      for (const segment of segments.values()) segment.close();
      throw error;
    }
  }

  /** Copies [offset, offset + target.length) of the buffer into target. The range must be checked. */
  copyOut(offset: number, target: Uint8Array): void {
    this.#walk(offset, target.length, (view, at) => target.set(view, at));
  }

  /** Copies source into the buffer at offset. The range must be checked. */
  copyIn(offset: number, source: Uint8Array): void {
    this.#walk(offset, source.length, (view, at) => view.set(source.subarray(at, at + view.length)));
  }

  /**
   * Pushes the views behind [offset, offset + length) onto `out`, in buffer
   * order, one per extent touched: for a device that copies straight between
   * two mappings (one memcpy per DMA). The range must be checked.
   */
  views(offset: number, length: number, out: Uint8Array[]): void {
    // #walk's loop without its callback, and plain Uint8Arrays rather than Buffer subarrays (whose
    // species constructor costs more than the view): a device asks for views on every DMA.
    const end = offset + length;
    for (const piece of this.#pieces) {
      const { view } = piece;
      const pieceEnd = piece.offset + view.length;
      if (pieceEnd <= offset) continue;
      if (piece.offset >= end) break;
      const from = Math.max(offset, piece.offset);
      out.push(new Uint8Array(view.buffer, view.byteOffset + (from - piece.offset), Math.min(end, pieceEnd) - from));
    }
  }

  /**
   * Calls visit(segment, segmentOffset, length) for each segment file piece
   * behind [offset, offset + length), in buffer order: where a device that
   * wrote through the views says it wrote. The range must be checked.
   */
  segments(offset: number, length: number, visit: (segment: string, segmentOffset: number, length: number) => void): void {
    this.#overlapping(offset, length, (piece, from, to) => visit(piece.segment, piece.segmentOffset + (from - piece.offset), to - from));
  }

  /** Drops every view and closes the segment files. */
  close(): void {
    this.#pieces = [];
    for (const segment of this.#segments) segment.close();
  }

  /** Calls visit(view, at) for each piece of [offset, offset + length), `at` being the position within the range. */
  #walk(offset: number, length: number, visit: (view: Buffer, at: number) => void): void {
    this.#overlapping(offset, length, (piece, from, to) => visit(piece.view.subarray(from - piece.offset, to - piece.offset), from - offset));
  }

  /** Calls visit(piece, from, to) for each piece overlapping [offset, offset + length), [from, to) being the overlap in buffer offsets. */
  #overlapping(offset: number, length: number, visit: (piece: Piece, from: number, to: number) => void): void {
    const end = offset + length;
    for (const piece of this.#pieces) {
      const pieceEnd = piece.offset + piece.view.length;
      if (pieceEnd <= offset) continue;
      if (piece.offset >= end) break;
      visit(piece, Math.max(offset, piece.offset), Math.min(end, pieceEnd));
    }
  }
}
