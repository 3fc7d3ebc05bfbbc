import { errno } from '@p2p/errno';
import { GiB, PAGE_SIZE, SharedMemory, type SegmentStore, validateSegmentName } from '@p2p/shm';
import type { FileOwner, OwnedFileRef, OwnerAttachmentRef, OwnerExtent } from '../owners/file-owner';

export const SYSTEM_HEAP = 'system-heap';

/** Where heap buffers live, and how much of it they may take. */
export interface SystemHeapOptions {
  readonly store: SegmentStore;
  /** The store's directory as importers name it (reported in map and mmap). */
  readonly directory: string;
  /** The identity of that tmpfs. */
  readonly shmId: string;
  /** Buffer n's segments are `<prefix>.<n>.<chunk>`. */
  readonly prefix: string;
  /** The most bytes all heap buffers may hold at once; default 1 GiB. */
  readonly maxBytes?: number;
}

/**
 * Where heap IOVAs start: the model gives each buffer a fresh range from a
 * bump allocator and never reuses one, as a 64-bit IOMMU domain never runs out.
 */
const HEAP_IOVA_BASE = 0x1_0000_0000n;

interface HeapBuffer {
  readonly memory: SharedMemory;
  readonly iova: bigint;
}

/** PAGE_ALIGN(): rounds up to a whole number of pages. */
export function pageAlign(size: number): number {
  return Math.ceil(size / PAGE_SIZE) * PAGE_SIZE;
}

/**
 * drivers/dma-buf/heaps/system_heap.c: host memory as dma-bufs, here one
 * SharedMemory region per buffer. The registry's built-in owner: it never
 * dies and its buffers are never revoked, so nothing ever moves them.
 * Attach, detach, unmap, pin and unpin have nothing to do (system memory
 * cannot move and needs no per-device state beyond what the registry keeps).
 */
export class SystemHeap implements FileOwner {
  readonly name = SYSTEM_HEAP;
  readonly shmId: string;
  readonly directory: string;
  readonly #store: SegmentStore;
  readonly #prefix: string;
  readonly #maxBytes: number;
  readonly #buffers = new Map<number, HeapBuffer>();
  #usedBytes = 0;
  #nextIova = HEAP_IOVA_BASE;

  constructor(options: SystemHeapOptions) {
    this.#store = options.store;
    this.directory = options.directory;
    this.shmId = options.shmId;
    this.#prefix = validateSegmentName(options.prefix);
    this.#maxBytes = options.maxBytes ?? GiB;
    if (!Number.isSafeInteger(this.#maxBytes) || this.#maxBytes < 0) {
      throw errno('EINVAL', `system heap: maxBytes ${this.#maxBytes} is not a non-negative integer`);
    }
  }

  /**
   * system_heap_allocate() for a page-aligned size: ENOMEM past the cap.
   * Creates the segments (sparse) and returns their prefix, the buffer's
   * handle; nothing is left behind on failure.
   */
  allocate(bufferId: number, size: number): string {
    if (this.#usedBytes + size > this.#maxBytes) {
      throw errno('ENOMEM', `system heap: ${size} more bytes would exceed the cap of ${this.#maxBytes} (${this.#usedBytes} in use)`);
    }
    const prefix = `${this.#prefix}.${bufferId}`;
    const memory = SharedMemory.create(this.#store, prefix, size);
    this.#buffers.set(bufferId, { memory, iova: this.#nextIova });
    this.#nextIova += BigInt(size);
    this.#usedBytes += size;
    return prefix;
  }

  /** system_heap_dma_buf_release(): the segments go, no file is left behind. */
  async release(file: OwnedFileRef): Promise<void> {
    const buffer = this.#heapBuffer(file.fileId);
    this.#buffers.delete(file.fileId);
    this.#usedBytes -= buffer.memory.size;
    buffer.memory.destroy();
  }

  async attach(): Promise<void> {}

  async detach(): Promise<void> {}

  async map(request: OwnerAttachmentRef): Promise<OwnerExtent[]> {
    return this.#extents(request.bufferId);
  }

  async unmap(): Promise<void> {}

  async pin(): Promise<void> {}

  async unpin(): Promise<void> {}

  /**
   * Relocates nothing: heap buffers are never revoked, so no move ever
   * notifies, times out, or fences an importer of one.
   */
  async fence(): Promise<void> {}

  async cpuExtents(bufferId: number): Promise<OwnerExtent[]> {
    return this.#extents(bufferId);
  }

  #extents(bufferId: number): OwnerExtent[] {
    const { memory, iova } = this.#heapBuffer(bufferId);
    let position = 0;
    return memory.extents(0, memory.size).map((extent) => {
      const dmaAddress = iova + BigInt(position);
      position += extent.length;
      return { segment: extent.segment, segmentOffset: extent.offset, length: extent.length, dmaAddress };
    });
  }

  #heapBuffer(bufferId: number): HeapBuffer {
    const buffer = this.#buffers.get(bufferId);
    if (buffer === undefined) throw errno('ENOENT', `system heap has no buffer ${bufferId}`);
    return buffer;
  }
}
