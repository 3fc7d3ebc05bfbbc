import * as fs from 'node:fs';
import { errno } from '@p2p/errno';
import { fsCall } from './fs-errno';
import { mapShared } from './guarded-map';
import { PAGE_SIZE } from './limits';
import { checkRange, checkSize } from './range';

/** What a SegmentStore hands a Segment when it has opened the file. */
export interface SegmentHandle {
  readonly name: string;
  readonly path: string;
  readonly fd: number;
  readonly size: number;
  /** The largest size the file may take: the store's chunk size. */
  readonly maxSize: number;
}

/**
 * One segment file, open read/write. Obtain it from SegmentStore.create/open.
 *
 * The whole file is mapped MAP_SHARED at offset 0 on the first view(), and
 * the mapping is kept until resize() or close(); window() maps just the pages
 * of one range, for its caller alone. Files never exceed the store's chunk
 * size (at most 1 GiB), so one mapping always fits mmap-io's 32-bit limits.
 *
 * Reads go through pread rather than the mapping: on tmpfs a read fault on a
 * hole allocates a page, while pread of a hole returns zeros for free, so
 * reading untouched memory keeps the file sparse.
 *
 * write() goes through pwrite for the same reason in reverse: a store into a
 * hole of the mapping must allocate a tmpfs page, and when the tmpfs is full
 * the kernel can only answer that page fault with SIGBUS, which kills the
 * process (shmem_fault() -> VM_FAULT_SIGBUS). pwrite allocates in
 * shmem_write_begin() instead and returns ENOSPC. Stores through a view()
 * still fault: on a full tmpfs they kill the writer with SIGBUS.
 *
 * Lifetime: mmap-io cannot munmap. close() closes the descriptor and drops the
 * segment's reference to the mapping; the mapping itself goes away when V8
 * collects it and every Buffer that view() returned. Such a Buffer stays
 * usable after close(), but after a shrinking resize() (here or in another
 * process) touching it past the new end of file raises SIGBUS.
 *
 * After close() every access (view, read, write, resize) throws EBADF; name,
 * path and size stay readable and close() may be called again.
 */
export class Segment {
  readonly name: string;
  readonly path: string;
  readonly maxSize: number;
  #fd: number | undefined;
  #size: number;
  #mapping: Buffer | undefined;

  constructor(handle: SegmentHandle) {
    this.name = handle.name;
    this.path = handle.path;
    this.maxSize = handle.maxSize;
    this.#fd = handle.fd;
    this.#size = handle.size;
  }

  get size(): number {
    return this.#size;
  }

  get closed(): boolean {
    return this.#fd === undefined;
  }

  /** Grows or shrinks the file (sparse); the mapping is redone on next use. */
  resize(newSize: number): void {
    const fd = this.#open('resize');
    checkSegmentSize(newSize, this.maxSize, `resize ${this.name}`);
    fsCall(() => fs.ftruncateSync(fd, newSize), `ftruncate ${this.path} to ${newSize}`);
    if (newSize !== this.#size) this.#mapping = undefined;
    this.#size = newSize;
  }

  /** The bytes [offset, offset+length) of the shared mapping itself: writes to it are writes to the segment. */
  view(offset: number, length: number): Buffer {
    const fd = this.#open('view');
    checkRange(offset, length, this.#size, `view of ${this.name}`);
    if (length === 0) return Buffer.alloc(0);
    this.#mapping ??= mapShared(fd, this.#size, 0);
    return this.#mapping.subarray(offset, offset + length);
  }

  /**
   * The bytes [offset, offset+length) through a mapping of their own that
   * covers only the pages they are on and that the segment does not keep:
   * for an importer, which maps what a buffer's extents name, afresh on every
   * fault. V8 counts a mapping's whole length as external memory, so mapping
   * the whole file (up to 1 GiB) for each fault of a small buffer would start
   * a garbage collection on nearly every fault. The mapping goes when V8
   * collects the returned Buffer.
   */
  window(offset: number, length: number): Buffer {
    const fd = this.#open('window');
    checkRange(offset, length, this.#size, `window of ${this.name}`);
    if (length === 0) return Buffer.alloc(0);
    const start = offset - (offset % PAGE_SIZE);
    const end = Math.min(this.#size, Math.ceil((offset + length) / PAGE_SIZE) * PAGE_SIZE);
    return mapShared(fd, end - start, start).subarray(offset - start, offset - start + length);
  }

  /** A private copy of [offset, offset+length). */
  read(offset: number, length: number): Buffer {
    this.#open('read');
    checkRange(offset, length, this.#size, `read of ${this.name}`);
    // Unsafe is fine: readInto fills every byte or throws.
    const out = Buffer.allocUnsafe(length);
    this.readInto(offset, out);
    return out;
  }

  /** Copies target.length bytes starting at offset into target, without going through a mapping. */
  readInto(offset: number, target: Uint8Array): void {
    const fd = this.#open('read');
    checkRange(offset, target.length, this.#size, `read of ${this.name}`);
    let done = 0;
    while (done < target.length) {
      const n = fsCall(
        () => fs.readSync(fd, target, done, target.length - done, offset + done),
        `pread ${this.path} at ${offset + done}`,
      );
      if (n === 0) {
        throw errno('EIO', `${this.path} ended at ${offset + done}, before ${this.#size}: truncated by someone else?`);
      }
      done += n;
    }
  }

  /**
   * Copies data into the segment at offset, through pwrite (see the class
   * comment): a full tmpfs is ENOSPC, and as with write(2) the bytes before
   * the failure may have landed.
   */
  write(offset: number, data: Uint8Array): void {
    const fd = this.#open('write');
    checkRange(offset, data.length, this.#size, `write to ${this.name}`);
    let done = 0;
    while (done < data.length) {
      // A short count is how tmpfs reports the first page it could not allocate; the next call gets ENOSPC.
      done += fsCall(
        () => fs.writeSync(fd, data, done, data.length - done, offset + done),
        `pwrite ${this.path} at ${offset + done}`,
      );
    }
  }

  /** Closes the descriptor and drops the mapping reference (see the class comment). */
  close(): void {
    const fd = this.#fd;
    if (fd === undefined) return;
    this.#fd = undefined;
    this.#mapping = undefined;
    fsCall(() => fs.closeSync(fd), `close ${this.path}`);
  }

  #open(op: string): number {
    if (this.#fd === undefined) throw errno('EBADF', `${op} on closed segment ${this.name}`);
    return this.#fd;
  }
}

/** A segment's size must be a non-negative safe integer no larger than the store's chunk size. */
export function checkSegmentSize(size: number, maxSize: number, what: string): void {
  checkSize(size, 0, what);
  if (size > maxSize) {
    throw errno('EOVERFLOW', `${what}: size ${size} exceeds the chunk size ${maxSize}; use a SharedMemory for more`);
  }
}
