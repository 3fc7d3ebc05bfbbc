import type { RegistrySession } from '@p2p/dmabuf-client';
import { errno, ErrnoError } from '@p2p/errno';
import { callNotTaken, resendUntilTaken } from '@p2p/rpc';
import type { PinnedUserMemory, UserMemoryPort } from '../ports/user-memory-port';

/**
 * Process memory as the registry lends it: pin_user_pages(FOLL_LONGTERM) is
 * the registry's PinUserPages, made on vfio-pci's own registry session
 * (opened with the platform's credential), so the pins are vfio-pci's and
 * die with that session if vfio-pci does. get_user_pages()'s errors (EFAULT
 * for a hole, device memory or a write to read-only memory) are the
 * registry's and pass through unchanged.
 */
export class RegistryUserMemory implements UserMemoryPort {
  constructor(private readonly session: Pick<RegistrySession, 'shmId' | 'pinUserPages' | 'unpinUserPages' | 'state'>) {}

  async pin(pid: number, userVa: bigint, length: bigint, write: boolean): Promise<PinnedUserMemory> {
    const pinned = await this.session.pinUserPages(pid, userVa, length, write);
    // The IOMMU (pci-emu) opens segments by name in this platform's
    // directory: pages in another tmpfs are memory it cannot reach.
    if (pinned.shm?.id !== this.session.shmId) {
      await this.session.unpinUserPages(pinned.pinId);
      throw errno('EFAULT', `pid ${pid}'s memory at 0x${userVa.toString(16)} is in ${pinned.directory}, a tmpfs the platform IOMMU does not share`);
    }
    let pinId: bigint | undefined = pinned.pinId;
    return {
      extents: pinned.extents.map((extent) => ({ segment: extent.segment, offset: Number(extent.segmentOffset), length: Number(extent.length) })),
      unpin: async () => {
        if (pinId === undefined) return;
        const id = pinId;
        pinId = undefined;
        await this.session.unpinUserPages(id).catch((error: unknown) => {
          // The end of the session unpinned every pin it held (and vfio-pci is shutting down).
          if (error instanceof ErrnoError && error.errno === 'ESHUTDOWN') return;
          if (!callNotTaken(error)) throw error;
          // unpin_user_pages() cannot fail: a registry that did not take it hears it again until it does.
          void resendUntilTaken(() => this.session.unpinUserPages(id), () => this.session.state === 'open');
        });
      },
    };
  }
}
