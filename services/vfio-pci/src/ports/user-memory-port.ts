/**
 * What iommufd needs of process memory: pin_user_pages() of a range of a
 * process's address space, as the memory behind it (segment files) for the
 * IOMMU to map. The registry knows processes' mappings (mmap of heap
 * dma-bufs); pinning is its to answer.
 */

/** `length` bytes at `offset` of a segment file, in address order. */
export interface PinnedExtent {
  readonly segment: string;
  readonly offset: number;
  readonly length: number;
}

/** A long-term pin (FOLL_LONGTERM): the memory stays where it is until unpin(). */
export interface PinnedUserMemory {
  /** The memory of the pinned range, laid end to end. */
  readonly extents: readonly PinnedExtent[];
  /** unpin_user_pages(): once; the pin holds nothing afterwards. */
  unpin(): Promise<void>;
}

export interface UserMemoryPort {
  /**
   * pin_user_pages(FOLL_LONGTERM | (write ? FOLL_WRITE : 0)) of
   * [userVa, userVa + length) of `pid`, page-aligned. get_user_pages()'s
   * errors: EFAULT for an address nothing maps, for device memory
   * (VM_IO | VM_PFNMAP: an mmap of a BAR) and for a write pin of read-only
   * memory, EFAULT once the process's memory is gone, ENOMEM past the
   * locked-memory limit.
   */
  pin(pid: number, userVa: bigint, length: bigint, write: boolean): Promise<PinnedUserMemory>;
}
