import type { OwnerExtent } from '../owners/file-owner';
import { sliceExtents } from '../segments/extents';
import type { SegmentAccess } from '../segments/segment-access';

/**
 * SegmentAccess over in-memory "segment files" keyed by directory and name,
 * for tests of the streamed fallback and CPU access without a tmpfs. A
 * segment never written reads as zeros.
 */
export class MemorySegments implements SegmentAccess {
  readonly #files = new Map<string, Buffer>();

  read(directory: string, extents: readonly OwnerExtent[], offset: number, length: number): Buffer {
    const out = Buffer.alloc(length);
    let done = 0;
    for (const piece of sliceExtents(extents, offset, length)) {
      this.#file(directory, piece).copy(out, done, piece.segmentOffset, piece.segmentOffset + piece.length);
      done += piece.length;
    }
    return out;
  }

  write(directory: string, extents: readonly OwnerExtent[], offset: number, data: Uint8Array): void {
    let done = 0;
    for (const piece of sliceExtents(extents, offset, data.length)) {
      this.#file(directory, piece).set(data.subarray(done, done + piece.length), piece.segmentOffset);
      done += piece.length;
    }
  }

  /** Renames a segment (an owner relocating memory): the old name holds nothing any more. */
  move(directory: string, from: string, to: string): void {
    const file = this.#files.get(`${directory}/${from}`);
    this.#files.delete(`${directory}/${from}`);
    if (file !== undefined) this.#files.set(`${directory}/${to}`, file);
  }

  /** What a segment holds now (zeros if never written). */
  contents(directory: string, segment: string, length: number): Buffer {
    return Buffer.from(this.#files.get(`${directory}/${segment}`)?.subarray(0, length) ?? Buffer.alloc(length));
  }

  #file(directory: string, piece: OwnerExtent): Buffer {
    const key = `${directory}/${piece.segment}`;
    let file = this.#files.get(key);
    const needed = piece.segmentOffset + piece.length;
    if (file === undefined || file.length < needed) {
      const grown = Buffer.alloc(needed);
      file?.copy(grown);
      file = grown;
      this.#files.set(key, file);
    }
    return file;
  }
}
