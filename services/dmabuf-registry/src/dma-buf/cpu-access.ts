import { errno } from '@p2p/errno';
import { PAGE_SIZE } from '@p2p/shm';
import type { FileLayer } from '../files/file-layer';
import { openedForReading, openedForWriting } from '../files/open-flags';
import { PROT_WRITE } from '../mm/prot';
import type { OwnerExtent } from '../owners/file-owner';
import { checkBufferRange, checkExtents } from '../segments/extents';
import type { SegmentAccess } from '../segments/segment-access';
import { type DmaBuf, dmaBufAt } from './dma-buf';

/** Where a buffer's bytes are now: pieces of the owner's segment files, in its directory. */
export interface BufferExtents {
  readonly directory: string;
  readonly extents: OwnerExtent[];
}

/**
 * CPU access to a dma-buf through its fd: dma_buf_mmap_internal() and the
 * reads and writes a mapping allows. The checks come in the kernel's order:
 * EBADF (fd not held), EINVAL (not a dma-buf), EACCES (mmap(2): the fd is not
 * open for the access: reading needs O_RDONLY or O_RDWR, writing O_WRONLY or
 * O_RDWR), EINVAL (no ->mmap op: the buffer was exported without cpuAccess),
 * EINVAL (out of bounds), ENODEV (revoked or orphaned).
 *
 * Where the bytes are is asked of the exporter (FileOwner.cpuExtents) on
 * every access, under the reservation lock, so a relocation is always seen.
 * An mmap result is a snapshot: a later revoke or fence cannot zap it as
 * vfio zaps its mmaps, so an mmap user must re-mmap after a move.
 */
export class CpuAccess {
  readonly #files: FileLayer;
  readonly #segments: SegmentAccess;

  constructor(files: FileLayer, segments: SegmentAccess) {
    this.#files = files;
    this.#segments = segments;
  }

  async read(pid: number, fd: number, offset: number, length: number): Promise<Buffer> {
    const buffer = this.#buffer(pid, fd, 'read', { read: true, write: false });
    checkBufferRange(offset, length, buffer.size, 'cpu read');
    return this.#withExtents(buffer, 'cpu read', (directory, extents) =>
      this.#segments.read(directory, extents, offset, length),
    );
  }

  async write(pid: number, fd: number, offset: number, data: Uint8Array): Promise<void> {
    const buffer = this.#buffer(pid, fd, 'write', { read: false, write: true });
    checkBufferRange(offset, data.length, buffer.size, 'cpu write');
    await this.#withExtents(buffer, 'cpu write', (directory, extents) =>
      this.#segments.write(directory, extents, offset, data),
    );
  }

  /**
   * The file's side of mmap(2) of a dma-buf fd (MAP_SHARED) and of
   * dma_buf_mmap_internal(): the checks above, where PROT_WRITE also needs
   * the fd open for writing (with reading, O_RDWR), then EINVAL for an
   * offset that is not page aligned, a range past the buffer, or length 0.
   * Returns the buffer without taking a reference.
   */
  mmapTarget(pid: number, fd: number, offset: number, length: number, prot: number): DmaBuf {
    const buffer = this.#buffer(pid, fd, 'mmap', { read: true, write: (prot & PROT_WRITE) !== 0 });
    if (Number.isSafeInteger(offset) && offset % PAGE_SIZE !== 0) {
      throw errno('EINVAL', `mmap: offset ${offset} is not a multiple of the page size ${PAGE_SIZE}`);
    }
    checkBufferRange(offset, length, buffer.size, 'mmap');
    if (length === 0) throw errno('EINVAL', 'mmap: length 0');
    return buffer;
  }

  /**
   * Where the whole buffer's bytes are now, asked of the exporter under the
   * reservation lock: ENODEV while revoked or orphaned.
   */
  async extentsOf(buffer: DmaBuf, what: string): Promise<BufferExtents> {
    return this.#withExtents(buffer, what, (directory, extents) => ({ directory, extents }));
  }

  #buffer(pid: number, fd: number, what: string, needs: { read: boolean; write: boolean }): DmaBuf {
    const buffer = dmaBufAt(this.#files, pid, fd);
    if (needs.read && !openedForReading(buffer.openFlags)) {
      throw errno('EACCES', `${what}: fd ${fd} is not open for reading`);
    }
    if (needs.write && !openedForWriting(buffer.openFlags)) {
      throw errno('EACCES', `${what}: fd ${fd} is not open for writing`);
    }
    if (!buffer.cpuAccess) {
      throw errno('EINVAL', `${what}: the exporter of dma-buf ${buffer.bufferId} offers no CPU access (no ->mmap)`);
    }
    return buffer;
  }

  /** Holds a reference (the fget() of the syscall) and the lock while the exporter answers and the bytes move. */
  async #withExtents<T>(
    buffer: DmaBuf,
    what: string,
    use: (directory: string, extents: OwnerExtent[]) => T,
  ): Promise<T> {
    buffer.checkReachable(what);
    buffer.get();
    try {
      return await buffer.resv.run(async () => {
        buffer.checkReachable(what);
        const owner = buffer.owner.owner;
        const extents = checkExtents(await owner.cpuExtents(buffer.bufferId), buffer.size, `${what} of dma-buf ${buffer.bufferId}`);
        return use(owner.directory, extents);
      });
    } finally {
      await this.#files.put(buffer);
    }
  }
}
