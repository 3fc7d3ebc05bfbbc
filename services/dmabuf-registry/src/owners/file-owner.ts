import type { DmaMapType } from '../dma-buf/p2p-oracle';

/**
 * A piece of a buffer, as an sg_table entry names pages: `length` bytes at
 * `segmentOffset` of segment file `segment` in the owner's directory, and the
 * address the importing device puts on the bus for them.
 */
export interface OwnerExtent {
  readonly segment: string;
  readonly segmentOffset: number;
  readonly length: number;
  readonly dmaAddress: bigint;
}

/** A file of an owner, as its release names it. */
export interface OwnedFileRef {
  readonly fileId: number;
  readonly handle: string;
}

/** An fd of one of the owner's files that a process closed while the file lives on. */
export interface ClosedFd {
  readonly pid: number;
  readonly fd: number;
  readonly fileId: number;
  readonly handle: string;
}

/**
 * One attachment to one of the owner's dma-bufs (`bufferId` is the file id of
 * the dma-buf's file), with what the importer said when it attached.
 */
export interface OwnerAttachmentRef {
  readonly bufferId: number;
  readonly handle: string;
  readonly attachmentId: number;
  /** The importing PCI function; empty for a CPU importer. */
  readonly importerBdf: string;
  readonly peer2peer: boolean;
}

/** dma_buf_ops.attach: who attaches, so the exporter can refuse (vfio_pci_dma_buf_attach). */
export interface OwnerAttach extends OwnerAttachmentRef {
  readonly importerPid: number;
  readonly dynamic: boolean;
}

/** dma_buf_ops.map_dma_buf: the registry has already decided how the importer reaches the memory. */
export interface OwnerMap extends OwnerAttachmentRef {
  readonly mapType: DmaMapType;
}

/**
 * A service that owns files (vfio-pci for device files and the dma-bufs it
 * exports, rdma-nic for verbs contexts) and answers the exporter ops of
 * struct dma_buf_ops for its dma-bufs.
 *
 * Ops that can fail in the kernel (attach, map_dma_buf, pin, the CPU access
 * of mmap) reject with an ErrnoError and the registry passes it on. Ops the
 * kernel declares void (detach, unmap_dma_buf, unpin, release, and fence)
 * cannot undo what the registry did: if one rejects, the registry's state
 * change stands and the failure goes to RegistryOptions.onOwnerError.
 *
 * Every op on a dma-buf runs under its reservation lock (dma_resv_lock): an
 * owner must not wait, inside an op, for a move of the same buffer.
 */
export interface FileOwner {
  /** Unique among live owners ("vfio-pci"). */
  readonly name: string;
  /** The tmpfs the owner's segments live in (the content of its `.p2p-shm-id`). */
  readonly shmId: string;
  /** The directory holding the owner's segment files. */
  readonly directory: string;
  /** The last reference is gone (dma_buf_ops.release, or a file's ->release). Called once per file. */
  release(file: OwnedFileRef): Promise<void>;
  /**
   * Optional, for owners that remember which of their files an fd names (a
   * cache of resolveFd): `pid` closed `fd` and the file lives on (another
   * fd, an fd in flight or an attachment holds it; the close of the last
   * reference is release() instead, and says the same). The close, and an
   * exiting process's close of each fd, returns only after this, and the
   * number is not handed out again before: the owner never serves a number
   * that already names another file. Void, like release.
   */
  fdClosed?(closed: ClosedFd): Promise<void>;
  attach(request: OwnerAttach): Promise<void>;
  detach(attachment: OwnerAttachmentRef): Promise<void>;
  /** The whole buffer, in order: the lengths add up to its size. */
  map(request: OwnerMap): Promise<OwnerExtent[]>;
  unmap(attachment: OwnerAttachmentRef): Promise<void>;
  /** Counted, like dma_buf_pin(): once per pin call, undone by one unpin each. */
  pin(attachment: OwnerAttachmentRef): Promise<void>;
  unpin(attachment: OwnerAttachmentRef): Promise<void>;
  /**
   * An importer of this buffer did not ack a move_notify in time: move the
   * memory to fresh segments so the stale mapping writes nowhere that matters.
   */
  fence(bufferId: number): Promise<void>;
  /**
   * Where a cpuAccess buffer's bytes are now, the whole buffer in order: the
   * exporter side of dma_buf_mmap() and of CPU reads and writes. Asked only
   * for buffers exported with cpuAccess; asked afresh on every access so a
   * fence's relocation is always seen.
   */
  cpuExtents(bufferId: number): Promise<OwnerExtent[]>;
}
