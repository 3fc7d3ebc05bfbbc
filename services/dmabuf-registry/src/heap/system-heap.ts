import { errno } from '@p2p/errno';
import { GiB, SharedMemory, type SegmentStore, validateSegmentName } from '@p2p/shm';
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
  /**
   * The most bytes of heap buffers charged to one process at once; at most
   * maxBytes, and maxBytes by default (no limit below the heap's own).
   */
  readonly processMaxBytes?: number;
}

/**
 * Where heap IOVAs start: the model gives each buffer a fresh range from a
 * bump allocator and never reuses one, as a 64-bit IOMMU domain never runs out.
 */
const HEAP_IOVA_BASE = 0x1_0000_0000n;

interface HeapBuffer {
  readonly memory: SharedMemory;
  readonly iova: bigint;
  /** The process the buffer is charged to: the one that allocated it. */
  readonly chargedPid: number;
}

/**
 * drivers/dma-buf/heaps/system_heap.c: host memory as dma-bufs, here one
 * SharedMemory region per buffer. The registry's built-in owner: it never
 * dies and its buffers are never revoked, so nothing ever moves them.
 * Attach, detach, unmap, pin and unpin have nothing to do (system memory
 * cannot move and needs no per-device state beyond what the registry keeps).
 *
 * Two limits keep one process from starving the others: the heap's cap, and
 * a per-process limit on the bytes charged to each process. A buffer is
 * charged to the process that allocated it until its release (the last
 * reference going: every fd, wherever SCM_RIGHTS took it, every fd in
 * flight and every attachment), as memcg charges a page to the cgroup that
 * allocated it and leaves it there when the page is shared, or the task
 * moves or exits (Documentation/admin-guide/cgroup-v2.rst, "Memory
 * Ownership"). So handing a buffer to another process gives the allocator
 * no room back and costs the receiver none of its own, and nobody escapes
 * the limit by having a helper hold its buffers.
 */
export class SystemHeap implements FileOwner {
  readonly name = SYSTEM_HEAP;
  readonly shmId: string;
  readonly directory: string;
  readonly #store: SegmentStore;
  readonly #prefix: string;
  readonly #maxBytes: number;
  readonly #processMaxBytes: number;
  readonly #buffers = new Map<number, HeapBuffer>();
  /** Bytes charged per pid; a pid leaves once nothing is charged to it. */
  readonly #charged = new Map<number, number>();
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
    this.#processMaxBytes = options.processMaxBytes ?? this.#maxBytes;
    if (!Number.isSafeInteger(this.#processMaxBytes) || this.#processMaxBytes < 0 || this.#processMaxBytes > this.#maxBytes) {
      throw errno('EINVAL', `system heap: processMaxBytes ${this.#processMaxBytes} is not an integer from 0 to maxBytes (${this.#maxBytes})`);
    }
  }

  /**
   * system_heap_allocate() for a page-aligned size, charged to `pid`: ENOMEM
   * past the heap's cap, or past the per-process limit for the bytes already
   * charged to `pid`. Creates the segments (sparse) and returns their
   * prefix, the buffer's handle; nothing is left behind on failure.
   */
  allocate(bufferId: number, size: number, pid: number): string {
    if (this.#usedBytes + size > this.#maxBytes) {
      throw errno('ENOMEM', `system heap: ${size} more bytes would exceed the cap of ${this.#maxBytes} (${this.#usedBytes} in use)`);
    }
    const charged = this.#charged.get(pid) ?? 0;
    if (charged + size > this.#processMaxBytes) {
      throw errno(
        'ENOMEM',
        `system heap: ${size} more bytes would exceed the per-process limit of ${this.#processMaxBytes} (pid ${pid} has ${charged} charged)`,
      );
    }
    const prefix = `${this.#prefix}.${bufferId}`;
    const memory = SharedMemory.create(this.#store, prefix, size);
    this.#buffers.set(bufferId, { memory, iova: this.#nextIova, chargedPid: pid });
    this.#nextIova += BigInt(size);
    this.#usedBytes += size;
    this.#charged.set(pid, charged + size);
    return prefix;
  }

  /** system_heap_dma_buf_release(): the segments go, no file is left behind, and the allocator's charge with them. */
  async release(file: OwnedFileRef): Promise<void> {
    const buffer = this.#heapBuffer(file.fileId);
    this.#buffers.delete(file.fileId);
    this.#usedBytes -= buffer.memory.size;
    const charged = (this.#charged.get(buffer.chargedPid) ?? 0) - buffer.memory.size;
    if (charged > 0) this.#charged.set(buffer.chargedPid, charged);
    else this.#charged.delete(buffer.chargedPid);
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
