import type { PciBar } from '../ports/pci-port';
import type { PhysVec } from './phys-vec';

/**
 * struct vfio_pci_dma_buf: one exported buffer, its physical ranges laid end
 * to end, and the revoked bit vfio_pci_dma_buf_move() flips. While its
 * device has it on its list (priv->vdev set) moves reach it;
 * vfio_pci_dma_buf_cleanup() takes it off and makes it forget the device for
 * good, release takes it off when its file goes.
 */
export class VfioDmaBuf {
  #bufferId: bigint | undefined;
  #list: Set<VfioDmaBuf> | undefined;
  #released = false;
  #forgotten = false;
  revoked: boolean;
  /** dma_buf_pin() calls not yet undone (the pin variant). */
  pins = 0;

  constructor(
    readonly handle: string,
    readonly providerBdf: string,
    readonly bar: PciBar,
    readonly phys: readonly PhysVec[],
    readonly size: bigint,
    readonly allowPin: boolean,
    readonly cpuAccess: boolean,
    revoked: boolean,
  ) {
    this.revoked = revoked;
  }

  /** The registry's id for it, once dma_buf_export() returned. */
  get bufferId(): bigint | undefined {
    return this.#bufferId;
  }

  /** vfio_pci_dma_buf_cleanup() ran: revoked for good, the device forgotten. */
  get forgotten(): boolean {
    return this.#forgotten;
  }

  /** Exported: list_add_tail(&priv->dmabufs_elm, &vdev->dmabufs), unless its file is already gone. */
  listOn(list: Set<VfioDmaBuf>, bufferId: bigint): void {
    this.#bufferId = bufferId;
    if (this.#released) return;
    this.#list = list;
    list.add(this);
  }

  /** vfio_pci_dma_buf_release(): list_del_init(), if cleanup has not done it already. */
  release(): void {
    this.#released = true;
    this.#list?.delete(this);
    this.#list = undefined;
  }

  /** vfio_pci_dma_buf_cleanup(): list_del_init(); priv->vdev = NULL; priv->revoked = true. */
  forget(): void {
    this.#list?.delete(this);
    this.#list = undefined;
    this.#forgotten = true;
    this.revoked = true;
  }
}
