import { errno } from '@p2p/errno';
import type { BarMemory, BarMemoryFactory } from './bar-memory';

/** Allocation granule: a 64 GiB BAR touched in one place costs one chunk. */
const CHUNK_SIZE = 64 * 1024;

/**
 * BarMemory on the JS heap for unit tests: a sparse map of 64 KiB chunks,
 * allocated on first write. Not shared with any other process.
 * After close() every access throws EBADF.
 */
export class HeapBarMemory implements BarMemory {
  readonly #chunks = new Map<number, Buffer>();
  #closed = false;

  constructor(readonly size: number) {
    if (!Number.isSafeInteger(size) || size <= 0) {
      throw errno('EINVAL', `BAR memory size ${size} is not a positive safe integer`);
    }
  }

  /** Bytes actually allocated, so tests can check sparseness. */
  get residentBytes(): number {
    return this.#chunks.size * CHUNK_SIZE;
  }

  read(offset: number, length: number): Buffer {
    this.#check(offset, length);
    const out = Buffer.alloc(length);
    this.#forEachSpan(offset, length, (index, chunkOffset, outOffset, spanLength) => {
      this.#chunks.get(index)?.copy(out, outOffset, chunkOffset, chunkOffset + spanLength);
    });
    return out;
  }

  write(offset: number, data: Uint8Array): void {
    this.#check(offset, data.length);
    this.#forEachSpan(offset, data.length, (index, chunkOffset, dataOffset, spanLength) => {
      this.#chunk(index).set(data.subarray(dataOffset, dataOffset + spanLength), chunkOffset);
    });
  }

  readInto(offset: number, target: Uint8Array): void {
    this.#check(offset, target.length);
    this.#forEachSpan(offset, target.length, (index, chunkOffset, position, spanLength) => {
      const chunk = this.#chunks.get(index);
      if (chunk) chunk.copy(target, position, chunkOffset, chunkOffset + spanLength);
      else target.fill(0, position, position + spanLength);
    });
  }

  /** Allocates the chunks it covers: a view is memory that may be written. */
  views(offset: number, length: number): Buffer[] {
    this.#check(offset, length);
    const views: Buffer[] = [];
    this.#forEachSpan(offset, length, (index, chunkOffset, _position, spanLength) => {
      views.push(this.#chunk(index).subarray(chunkOffset, chunkOffset + spanLength));
    });
    return views;
  }

  close(): void {
    this.#closed = true;
    this.#chunks.clear();
  }

  #check(offset: number, length: number): void {
    if (this.#closed) {
      throw errno('EBADF', 'BAR memory is closed');
    }
    if (!Number.isSafeInteger(offset) || !Number.isSafeInteger(length) || offset < 0 || length < 0 || offset + length > this.size) {
      throw errno('EINVAL', `range ${offset}+${length} is outside BAR memory of ${this.size} bytes`);
    }
  }

  #chunk(index: number): Buffer {
    let chunk = this.#chunks.get(index);
    if (!chunk) {
      chunk = Buffer.alloc(CHUNK_SIZE);
      this.#chunks.set(index, chunk);
    }
    return chunk;
  }

  #forEachSpan(offset: number, length: number, visit: (index: number, chunkOffset: number, position: number, spanLength: number) => void): void {
    for (let position = 0; position < length; ) {
      const at = offset + position;
      const chunkOffset = at % CHUNK_SIZE;
      const spanLength = Math.min(CHUNK_SIZE - chunkOffset, length - position);
      visit(Math.floor(at / CHUNK_SIZE), chunkOffset, position, spanLength);
      position += spanLength;
    }
  }
}

export const heapBarMemoryFactory: BarMemoryFactory = (_name, size) => new HeapBarMemory(size);
