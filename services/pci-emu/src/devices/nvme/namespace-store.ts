import { errno, ErrnoError } from '@p2p/errno';

/** The logical block sizes a namespace may have (LBA format 0's LBADS: 9 or 12). */
export const NAMESPACE_BLOCK_SIZES: readonly number[] = [512, 4096];

/**
 * The blocks behind one namespace. The controller checks every range against
 * the namespace's size before calling, and passes the command's data as
 * views of the memory it moves to or from (host memory, a peer's BAR, the
 * CMB), so a store reads or writes them in place: one copy per command.
 * A failure of the medium throws an ErrnoError (EIO, ENOSPC...), which the
 * controller completes as a media error; any other throw is a bug.
 */
export interface NamespaceStore {
  /** Namespace size in logical blocks (NSZE). */
  readonly blocks: number;
  /** Logical block size in bytes: 512 or 4096. */
  readonly blockSize: number;
  /** Fills `views`, in order, from the bytes at `byteOffset`. */
  readv(byteOffset: number, views: readonly Buffer[]): void;
  /** Stores `views`, in order, at `byteOffset`. */
  writev(byteOffset: number, views: readonly Buffer[]): void;
  /** Makes every completed write durable (the volatile write cache's Flush). */
  flush(): void;
  /** Stores `length` zero bytes at `byteOffset`. */
  writeZeroes(byteOffset: number, length: number): void;
  /** Releases the medium (a file's descriptor); the bus calls it once, from PciBus.close(). */
  close?(): void;
}

/** EINVAL unless `blocks` x `blockSize` is a positive size a JS number holds exactly. */
export function checkNamespaceGeometry(blocks: number, blockSize: number): number {
  if (!NAMESPACE_BLOCK_SIZES.includes(blockSize)) {
    throw errno('EINVAL', `namespace block size ${blockSize} is not one of ${NAMESPACE_BLOCK_SIZES.join(', ')}`);
  }
  const size = blocks * blockSize;
  if (!Number.isSafeInteger(blocks) || blocks <= 0 || !Number.isSafeInteger(size)) {
    throw errno('EINVAL', `namespace of ${blocks} blocks of ${blockSize} bytes has no exact size`);
  }
  return size;
}

/** Total bytes of `views`. */
export const viewsLength = (views: readonly Buffer[]): number => views.reduce((sum, view) => sum + view.length, 0);

/** A controller bug, not a media error: the controller checks ranges before it calls a store. */
export function checkRange(size: number, byteOffset: number, length: number): void {
  if (!Number.isSafeInteger(byteOffset) || byteOffset < 0 || byteOffset + length > size) {
    throw new RangeError(`namespace range ${byteOffset}+${length} is outside ${size} bytes`);
  }
}

/** The namespace an NSID names, or undefined (0, beyond NN, or the broadcast value FFFFFFFFh). */
export function namespaceOf(namespaces: readonly NamespaceStore[], nsid: number): NamespaceStore | undefined {
  return nsid >= 1 && nsid <= namespaces.length ? namespaces[nsid - 1] : undefined;
}

/** Runs a store operation: false if the medium failed (an ErrnoError); any other throw is a bug and propagates. */
export function storeSucceeded(work: () => void): boolean {
  try {
    work();
    return true;
  } catch (error) {
    if (error instanceof ErrnoError) return false;
    throw error;
  }
}
