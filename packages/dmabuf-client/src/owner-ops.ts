import type { dmabuf } from '@p2p/proto';

/** One call of the registry into an owner (OwnerCall), with the owner's handle for the file. */
export interface OwnerCallInfo {
  readonly callId: bigint;
  readonly op: dmabuf.OwnerOp;
  /** The file the call is about; for a dma-buf this is its buffer id. */
  readonly fileId: bigint;
  /** The attachment, for attach, detach, map, unmap, pin and unpin; 0n otherwise. */
  readonly attachmentId: bigint;
  /** The importing PCI function; empty for a CPU importer. */
  readonly importerBdf: string;
  readonly peer2peer: boolean;
  /** For attach: the importing process, and whether it is dynamic (gets move_notify). */
  readonly importerPid: number;
  readonly dynamic: boolean;
  /** For map: how the importer reaches the memory, as the registry decided it (pci_p2pdma_map_type). */
  readonly mapType: dmabuf.DmaMapType;
  /** For fdClosed: the process and the fd it closed; 0 otherwise. */
  readonly pid: number;
  readonly fd: number;
  /**
   * The owner's handle for the file (ExportDmaBuf.handle, CreateFile.handle):
   * the one the call carries, else the one this owner session recorded when
   * it made the file; undefined if neither knows it.
   */
  readonly handle: string | undefined;
}

/**
 * The exporter side of struct dma_buf_ops (and a file's ->release), as an
 * owner service implements it. An op that throws an ErrnoError fails with its
 * errno (attach, map and pin can refuse, as in the kernel); anything else
 * thrown is EIO. Optional ops that are missing succeed, as the dma-buf core
 * skips exporter ops that are NULL.
 */
export interface OwnerOps {
  attach?(call: OwnerCallInfo): void | Promise<void>;
  detach?(call: OwnerCallInfo): void | Promise<void>;
  /** map_dma_buf: where the whole buffer is, in order (the lengths add up to its size). */
  map(call: OwnerCallInfo): readonly dmabuf.Extent[] | Promise<readonly dmabuf.Extent[]>;
  /**
   * The whole buffer's extents for CPU access (dma_buf_mmap, CPU reads and
   * writes) of a buffer exported with cpuAccess, asked afresh on every
   * access. Default: map(call), the same memory.
   */
  cpuMap?(call: OwnerCallInfo): readonly dmabuf.Extent[] | Promise<readonly dmabuf.Extent[]>;
  unmap?(call: OwnerCallInfo): void | Promise<void>;
  pin?(call: OwnerCallInfo): void | Promise<void>;
  unpin?(call: OwnerCallInfo): void | Promise<void>;
  /** The last reference to the file is gone: dma_buf_ops.release, or a file's ->release. */
  release(call: OwnerCallInfo): void | Promise<void>;
  /**
   * For owners that remember which of their files an fd names (a cache of
   * ResolveFd): call.pid closed call.fd, and the file (call.fileId) lives on
   * elsewhere; the close of its last reference is release instead. Having
   * this op asks the registry for these calls (RegisterOwner
   * notify_fd_closed); the close returns to its caller only after it
   * resolved, and the number names no other file before that.
   */
  fdClosed?(call: OwnerCallInfo): void | Promise<void>;
  /**
   * An importer did not ack a move_notify in time: move the memory to fresh
   * segments, so its stale mapping writes nowhere anybody reads.
   */
  fence(call: OwnerCallInfo): void | Promise<void>;
}
