import type { DmaBufMemory, MemoryWindow } from '../memory/memory';

/** Memory the NIC imported from the registry for one MR, until deregistration detaches it. */
export interface ImportedMemory<M> {
  readonly memory: M;
  /** Host memory the process may write (its fd open for writing): what a writable access may be granted on. */
  readonly writable?: boolean;
  /** dma_buf_detach(): the registry forgets the attachment. */
  detach(): Promise<void>;
}

/**
 * Where the NIC's MR memory comes from: dma-bufs in a process's fd table,
 * attached with this NIC's BDF as the importing device.
 */
export interface MemoryImportPort {
  /** ibv_reg_mr(): [offset, offset + length) of a system-heap dma-buf, mapped and pinned, writable if `access` writes. */
  hostMemory(pid: number, heapFd: number, offset: number, length: number, access: number): Promise<ImportedMemory<MemoryWindow>>;
  /** ibv_reg_dmabuf_mr(): a dynamic attachment; `onMoveNotify` runs synchronously on each move_notify, before the ack. */
  dmaBuf(pid: number, fd: number, onMoveNotify: () => void): Promise<ImportedMemory<DmaBufMemory>>;
}

/** A file as the registry resolved an fd: whether it is one of this NIC's, and its owner's handle for it. */
export interface ResolvedContextFile {
  readonly owner: string;
  readonly handle: string;
  /** Owned by this NIC (a context file, if the NIC still has the handle). */
  readonly ours: boolean;
}

/** The verbs-context files of this NIC in the registry (/dev/infiniband/uverbsN opened by a process). */
export interface ContextFilePort {
  /** Installs a new context file with `handle` in pid's fd table; resolves to the fd. */
  create(pid: number, handle: string): Promise<number>;
  /** What pid's fd refers to; rejects with the registry's errno (EBADF for an fd pid does not hold). */
  resolve(pid: number, fd: number): Promise<ResolvedContextFile>;
}
