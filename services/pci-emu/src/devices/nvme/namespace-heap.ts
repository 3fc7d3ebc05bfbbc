import { checkNamespaceGeometry, checkRange, type NamespaceStore, viewsLength } from './namespace-store';

/** The most a heap namespace may hold: it is one Buffer, for unit tests. */
const MAX_HEAP_NAMESPACE = 256 * 1024 * 1024;

/** A namespace on the JS heap, for unit tests; counts its flushes so a test can see one. */
export class HeapNamespaceStore implements NamespaceStore {
  readonly #data: Buffer;
  #flushes = 0;

  constructor(
    readonly blocks: number,
    readonly blockSize: number,
  ) {
    const size = checkNamespaceGeometry(blocks, blockSize);
    if (size > MAX_HEAP_NAMESPACE) throw new RangeError(`a heap namespace holds at most ${MAX_HEAP_NAMESPACE} bytes`);
    this.#data = Buffer.alloc(size);
  }

  /** The namespace's bytes, for a test to seed or inspect. */
  get data(): Buffer {
    return this.#data;
  }

  get flushes(): number {
    return this.#flushes;
  }

  readv(byteOffset: number, views: readonly Buffer[]): void {
    checkRange(this.#data.length, byteOffset, viewsLength(views));
    let at = byteOffset;
    for (const view of views) {
      this.#data.copy(view, 0, at, at + view.length);
      at += view.length;
    }
  }

  writev(byteOffset: number, views: readonly Buffer[]): void {
    checkRange(this.#data.length, byteOffset, viewsLength(views));
    let at = byteOffset;
    for (const view of views) {
      this.#data.set(view, at);
      at += view.length;
    }
  }

  flush(): void {
    this.#flushes++;
  }

  writeZeroes(byteOffset: number, length: number): void {
    checkRange(this.#data.length, byteOffset, length);
    this.#data.fill(0, byteOffset, byteOffset + length);
  }
}
