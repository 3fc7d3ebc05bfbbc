import type { DmaBufImporter, RegistrySession } from '@p2p/dmabuf-client';
import { errno } from '@p2p/errno';
import { dmabuf } from '@p2p/proto';
import type { RingSpace } from './ring';

/**
 * The memory of one payload ring: a system-heap dma-buf
 * (/dev/dma_heap/system) that one NIC allocates and hands to the other by
 * fd passing, mapped in both with shared memory, so that a payload crosses
 * it with one memcpy on each side. Both NICs hold an fd and an attachment;
 * the buffer goes when both have released theirs.
 */
export class RingMemory implements RingSpace {
  readonly size: number;
  readonly #session: RegistrySession;
  readonly #fd: number;
  readonly #importer: DmaBufImporter;

  private constructor(session: RegistrySession, fd: number, importer: DmaBufImporter) {
    this.#session = session;
    this.#fd = fd;
    this.#importer = importer;
    this.size = importer.size;
  }

  /**
   * A fresh ring of `size` bytes, mapped here; undefined (and nothing left
   * behind) when this process cannot map it with shared memory (its segment
   * directory is not the registry's tmpfs).
   */
  static async allocate(session: RegistrySession, size: number): Promise<RingMemory | undefined> {
    const { fd } = await session.heapAllocate(size);
    return RingMemory.#mapped(session, fd, size);
  }

  /** The peer's ring, from the fd token it sent to this process; undefined as for allocate(). */
  static async receive(session: RegistrySession, token: string, size: number): Promise<RingMemory | undefined> {
    const fd = await session.receiveFd(token);
    return RingMemory.#mapped(session, fd, size);
  }

  static async #mapped(session: RegistrySession, fd: number, size: number): Promise<RingMemory | undefined> {
    let importer: DmaBufImporter | undefined;
    try {
      importer = await session.importDmaBuf({ fd, importerBdf: '' });
      if (importer.size !== size) throw errno('EINVAL', `ring of ${importer.size} bytes where ${size} were announced`);
      const { transport } = await importer.map();
      const ring = new RingMemory(session, fd, importer);
      if (transport === dmabuf.Transport.TRANSPORT_SHARED_MEMORY) return ring;
      await ring.release();
      return undefined;
    } catch (error) {
      await Promise.allSettled([importer?.detach(), session.closeFd(fd)]);
      throw error;
    }
  }

  /** [offset, offset + size) as a space of its own (the payload ring, the frame ring); released with the whole. */
  window(offset: number, size: number): RingSpace {
    return { size, views: (at, length, out) => this.views(offset + at, length, out), release: () => Promise.resolve() };
  }

  /** Hands the ring to `pid`: a one-time token for its receiveFd(). */
  sendTo(pid: number): Promise<string> {
    return this.#session.sendFd(this.#fd, pid);
  }

  /** The mapped views of [offset, offset + length), pushed onto `out`; false once the mapping is gone. */
  views(offset: number, length: number, out: Uint8Array[]): boolean {
    return this.#importer.views(offset, length, out);
  }

  /**
   * Detaches and closes the fd. Failures are moot: they mean the session is
   * gone, and the registry released everything of it already.
   */
  async release(): Promise<void> {
    await Promise.allSettled([this.#importer.detach(), this.#session.closeFd(this.#fd)]);
  }
}
