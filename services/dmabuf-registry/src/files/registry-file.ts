import { errno } from '@p2p/errno';
import type { OwnerRecord } from '../owners/owner-record';

export type FileKind = 'dma-buf' | 'owned';

/**
 * A struct file: refcounted by every fd, every in-flight SCM_RIGHTS token and
 * every dma-buf attachment that refers to it. Created holding one reference,
 * the one of the fd it is about to be installed in.
 */
export class RegistryFile {
  #refs = 1;

  constructor(
    readonly fileId: number,
    readonly owner: OwnerRecord,
    /** The owner's own name for the file (a device BDF, a context id). */
    readonly handle: string,
    readonly openFlags: number,
  ) {}

  get kind(): FileKind {
    return 'owned';
  }

  get refcount(): number {
    return this.#refs;
  }

  /**
   * get_file_active() / dma_buf_try_get(): a file whose last reference is
   * gone cannot come back. Lookups and this call run without an await in
   * between, so holders always find a live file; the check keeps it so.
   */
  get(): void {
    if (this.#refs === 0) throw errno('EBADF', `file ${this.fileId} is being released`);
    this.#refs++;
  }

  /** fput() / dma_buf_put(): true when this was the last reference, and the caller must release. */
  put(): boolean {
    this.#refs--;
    return this.#refs === 0;
  }
}
