import { constants as bufferConstants } from 'node:buffer';
import { errno, ErrnoError } from '@p2p/errno';
import { checkRange, checkSize } from './range';
import type { Segment } from './segment';
import { validateSegmentName } from './segment-name';
import type { SegmentStore } from './segment-store';

/** One contiguous piece of a range: `length` bytes at `offset` in segment file `segment`. */
export interface Extent {
  readonly segment: string;
  readonly offset: number;
  readonly length: number;
}

/** A piece of a range within chunk `index`. */
interface Span {
  readonly index: number;
  readonly offset: number;
  readonly length: number;
}

/**
 * A large region (a device BAR, say 64 GiB) stored as segment files
 * `<prefix>.0`, `<prefix>.1`, ... of store.chunkSize bytes each (the last may
 * be shorter). No single file or mapping exceeds the chunk size, which keeps
 * every mmap-io call within its 32-bit limits however large the region.
 *
 * Files are sparse and a chunk is opened and mapped only when first touched,
 * so an untouched region costs neither memory nor descriptors. Reads use
 * pread and never allocate holes; writes use pwrite, so a full tmpfs is
 * ENOSPC (see Segment).
 *
 * Offsets are JS numbers, exact up to 2^53. After close() every access throws
 * EBADF; size stays readable and close() may be repeated.
 */
export class SharedMemory {
  readonly size: number;
  readonly prefix: string;
  readonly chunkSize: number;
  readonly #store: SegmentStore;
  readonly #chunks: (Segment | undefined)[];
  #closed = false;

  private constructor(store: SegmentStore, prefix: string, size: number) {
    this.#store = store;
    this.prefix = prefix;
    this.size = size;
    this.chunkSize = store.chunkSize;
    this.#chunks = new Array<Segment | undefined>(Math.ceil(size / store.chunkSize)).fill(undefined);
  }

  /** Creates every chunk file (sparse). EEXIST if any exists; nothing is left behind on failure. */
  static create(store: SegmentStore, prefix: string, size: number): SharedMemory {
    const memory = SharedMemory.#validated(store, prefix, size);
    const created: string[] = [];
    try {
      for (let index = 0; index < memory.#chunks.length; index++) {
        const name = memory.#chunkName(index);
        store.create(name, memory.#chunkLength(index)).close();
        created.push(name);
      }
    } catch (err) {
      for (const name of created) unlinkIfPresent(store, name);
      throw err;
    }
    return memory;
  }

  /**
   * Attaches to a region made by create() with the same prefix, size and
   * chunk size. ENOENT if a chunk is missing, EINVAL if one has another size.
   */
  static open(store: SegmentStore, prefix: string, size: number): SharedMemory {
    const memory = SharedMemory.#validated(store, prefix, size);
    for (let index = 0; index < memory.#chunks.length; index++) {
      const info = store.stat(memory.#chunkName(index));
      const expected = memory.#chunkLength(index);
      if (info.size !== expected) {
        throw errno(
          'EINVAL',
          `${info.name} has ${info.size} bytes, expected ${expected}: made with another size or chunk size?`,
        );
      }
    }
    return memory;
  }

  static #validated(store: SegmentStore, prefix: string, size: number): SharedMemory {
    validateSegmentName(prefix);
    checkSize(size, 1, `region ${prefix}`);
    const memory = new SharedMemory(store, prefix, size);
    // The longest chunk name must be valid too, or the last chunks would fail late.
    validateSegmentName(memory.#chunkName(memory.#chunks.length - 1));
    return memory;
  }

  get closed(): boolean {
    return this.#closed;
  }

  /** The segment-file pieces of [offset, offset+length), in order: the scatter list an importer maps. */
  extents(offset: number, length: number): Extent[] {
    return this.#spans(offset, length, 'extents').map((span) => ({
      segment: this.#chunkName(span.index),
      offset: span.offset,
      length: span.length,
    }));
  }

  /**
   * The shared mappings of [offset, offset+length), one Buffer per extent:
   * writing into them writes the region, with no copy in between, but a
   * store into a hole of a full tmpfs raises SIGBUS (see Segment).
   */
  views(offset: number, length: number): Buffer[] {
    return this.#spans(offset, length, 'views').map((span) =>
      this.#segment(span.index).view(span.offset, span.length),
    );
  }

  /** A private copy of [offset, offset+length). */
  read(offset: number, length: number): Buffer {
    this.#checkOpen('read');
    checkRange(offset, length, this.size, `read of ${this.prefix}`);
    if (length > bufferConstants.MAX_LENGTH) {
      throw errno('EOVERFLOW', `read of ${length} bytes exceeds the largest Buffer (${bufferConstants.MAX_LENGTH})`);
    }
    // Unsafe is fine: the pieces below fill every byte or throw.
    const out = Buffer.allocUnsafe(length);
    this.#readInto(offset, out);
    return out;
  }

  /**
   * Copies data into the region at offset, chunk by chunk via pwrite (see
   * Segment.write): a full tmpfs is ENOSPC, never SIGBUS.
   */
  write(offset: number, data: Uint8Array): void {
    let done = 0;
    for (const span of this.#spans(offset, data.length, 'write')) {
      this.#segment(span.index).write(span.offset, data.subarray(done, done + span.length));
      done += span.length;
    }
  }

  /**
   * memcpy from [offset, offset+length) of this region into `target` at
   * `targetOffset`: each source piece is pread straight into the target's
   * mapping (or buffer), so bytes are copied exactly once and source holes
   * stay unallocated. Both ranges are checked before anything is copied.
   * Overlapping ranges of one region are refused with EINVAL, as memcpy
   * leaves them undefined. A target on a full tmpfs fails with EFAULT, not
   * SIGBUS: the page fault happens inside pread, where the kernel can fail
   * the copy instead of signalling.
   */
  copyTo(offset: number, length: number, target: SharedMemory | Uint8Array, targetOffset: number): void {
    this.#checkOpen('copyTo');
    checkRange(offset, length, this.size, `copy from ${this.prefix}`);
    if (target instanceof SharedMemory) {
      target.#checkOpen('copyTo');
      checkRange(targetOffset, length, target.size, `copy to ${target.prefix}`);
      if (this.#sameFilesAs(target) && offset < targetOffset + length && targetOffset < offset + length) {
        throw errno(
          'EINVAL',
          `copy within ${this.prefix}: [${offset}, +${length}) overlaps [${targetOffset}, +${length})`,
        );
      }
      let done = 0;
      for (const view of target.views(targetOffset, length)) {
        this.#readInto(offset + done, view);
        done += view.length;
      }
    } else {
      checkRange(targetOffset, length, target.length, 'copy to buffer');
      this.#readInto(offset, target.subarray(targetOffset, targetOffset + length));
    }
  }

  /** Closes every opened chunk; see Segment for what happens to mappings already handed out. */
  close(): void {
    this.#closed = true;
    for (const segment of this.#chunks) segment?.close();
    this.#chunks.fill(undefined);
  }

  /** close() and unlink every chunk file. Chunks already gone are not an error. */
  destroy(): void {
    this.close();
    for (let index = 0; index < this.#chunks.length; index++) {
      unlinkIfPresent(this.#store, this.#chunkName(index));
    }
  }

  /** Fills target from offset on, chunk by chunk, via pread. */
  #readInto(offset: number, target: Uint8Array): void {
    let done = 0;
    for (const span of this.#spans(offset, target.length, 'read')) {
      this.#segment(span.index).readInto(span.offset, target.subarray(done, done + span.length));
      done += span.length;
    }
  }

  /** Splits a checked range at chunk boundaries. */
  #spans(offset: number, length: number, op: string): Span[] {
    this.#checkOpen(op);
    checkRange(offset, length, this.size, `${op} of ${this.prefix}`);
    const spans: Span[] = [];
    const end = offset + length;
    for (let position = offset; position < end; ) {
      const index = Math.floor(position / this.chunkSize);
      const within = position - index * this.chunkSize;
      const spanLength = Math.min(end - position, this.#chunkLength(index) - within);
      spans.push({ index, offset: within, length: spanLength });
      position += spanLength;
    }
    return spans;
  }

  #segment(index: number): Segment {
    const open = this.#chunks[index];
    if (open !== undefined) return open;
    const segment = this.#store.open(this.#chunkName(index));
    this.#chunks[index] = segment;
    return segment;
  }

  #chunkName(index: number): string {
    return `${this.prefix}.${index}`;
  }

  #chunkLength(index: number): number {
    return Math.min(this.chunkSize, this.size - index * this.chunkSize);
  }

  #sameFilesAs(other: SharedMemory): boolean {
    return other.#store.dir === this.#store.dir && other.prefix === this.prefix;
  }

  #checkOpen(op: string): void {
    if (this.#closed) throw errno('EBADF', `${op} on closed region ${this.prefix}`);
  }
}

function unlinkIfPresent(store: SegmentStore, name: string): void {
  try {
    store.unlink(name);
  } catch (err) {
    if (!(err instanceof ErrnoError && err.errno === 'ENOENT')) throw err;
  }
}
