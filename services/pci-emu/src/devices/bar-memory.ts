/**
 * Storage behind a memory-like BAR (NVMe CMB, accelerator device memory,
 * generic memory BARs). The domain never owns memory: the service backs a
 * BAR with shared-memory segments so another process can map it, tests with
 * heap-bar-memory.ts. Offsets and lengths are JS numbers, exact up to 2^53;
 * the bus validates them against `size` before calling.
 */
export interface BarMemory {
  readonly size: number;
  /** A copy of `length` bytes at `offset`; never-written bytes read 0. */
  read(offset: number, length: number): Buffer;
  write(offset: number, data: Uint8Array): void;
  /**
   * Copies target.length bytes at `offset` into `target`: a DMA's source,
   * read once and straight into the destination, without mapping (so holes
   * stay holes).
   */
  readInto(offset: number, target: Uint8Array): void;
  /** The memory itself as Buffers covering [offset, offset + length) in order: a DMA's destination. */
  views(offset: number, length: number): Buffer[];
  /** Releases the storage; the bus calls it once, from PciBus.close(). */
  close(): void;
}

/** Creates the memory for one BAR. `name` is unique per BAR and file-name safe, e.g. "0000-03-00.0-bar2". */
export type BarMemoryFactory = (name: string, size: number) => BarMemory;
