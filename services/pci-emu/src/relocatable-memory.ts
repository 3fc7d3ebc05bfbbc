import type { SegmentStore } from '@p2p/shm';
import { SharedMemory } from '@p2p/shm';
import type { BarMemory } from './devices/bar-memory';

/** Copy granule of a relocation; all-zero granules are skipped so sparse BARs stay sparse. */
const GRANULE = 4 * 1024 * 1024;
const ZEROS = Buffer.alloc(GRANULE);

/**
 * A BAR's memory that can move to fresh segment files. The device keeps this
 * object; only the files behind it change, so a process that mapped the old
 * files (an importer frozen mid-DMA) writes into orphaned memory nobody reads
 * any more.
 */
export class RelocatableMemory implements BarMemory {
  #current: SharedMemory;
  #generation = 0;

  constructor(
    private readonly store: SegmentStore,
    private readonly prefix: string,
    readonly size: number,
  ) {
    this.#current = SharedMemory.create(store, this.#name(), size);
  }

  get generation(): number {
    return this.#generation;
  }

  read(offset: number, length: number): Buffer {
    return this.#current.read(offset, length);
  }

  write(offset: number, data: Uint8Array): void {
    this.#current.write(offset, data);
  }

  /** pread from the current files straight into `target`. */
  readInto(offset: number, target: Uint8Array): void {
    this.#current.copyTo(offset, target.length, target, 0);
  }

  /** Views of the current files: after a relocation, views taken before it reach the orphaned old files. */
  views(offset: number, length: number): Buffer[] {
    return this.#current.views(offset, length);
  }

  extents(offset: number, length: number): ReturnType<SharedMemory['extents']> {
    return this.#current.extents(offset, length);
  }

  /**
   * The offset in this memory of byte `offset` of segment file `segment`,
   * if that is one of its current files: undefined for any other name,
   * including the files of an earlier generation, which a relocation
   * orphaned (a write into them reaches nothing anybody reads).
   */
  offsetOf(segment: string, offset: number): number | undefined {
    const files = `${this.#current.prefix}.`;
    if (!segment.startsWith(files)) return undefined;
    const chunk = segment.slice(files.length);
    if (!/^(0|[1-9]\d{0,8})$/.test(chunk)) return undefined;
    return Number(chunk) * this.#current.chunkSize + offset;
  }

  /**
   * Copies the written part into new files, then unlinks the old ones:
   * segment files that hold no memory are skipped whole, and all-zero
   * granules of the others, so a 64 GiB BAR with a few pages written moves
   * in microseconds and stays sparse.
   */
  relocate(): number {
    this.#generation++;
    const next = SharedMemory.create(this.store, this.#name(), this.size);
    try {
      const chunk = this.#current.chunkSize;
      for (let base = 0; base < this.size; base += chunk) {
        const [file] = this.#current.extents(base, Math.min(chunk, this.size - base));
        if (file === undefined || this.store.stat(file.segment).allocatedBytes === 0) continue;
        for (let at = base; at < Math.min(base + chunk, this.size); at += GRANULE) {
          const bytes = this.#current.read(at, Math.min(GRANULE, this.size - at));
          if (!bytes.equals(ZEROS.subarray(0, bytes.length))) next.write(at, bytes);
        }
      }
    } catch (error) {
      next.destroy();
      this.#generation--;
      throw error;
    }
    this.#current.destroy();
    this.#current = next;
    return this.#generation;
  }

  close(): void {
    this.#current.close();
  }

  destroy(): void {
    this.#current.destroy();
  }

  #name(): string {
    return `${this.prefix}.g${this.#generation}`;
  }
}
