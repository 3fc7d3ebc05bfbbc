import type { PciBar } from '../ports/pci-port';
import type { InProcessImporter } from './in-process-importer';
import type { PhysVec } from './phys-vec';

/**
 * struct vfio_pci_dma_buf: one exported buffer, its physical ranges laid end
 * to end, and the revoked bit vfio_pci_dma_buf_move() flips. While its
 * device has it on its list (priv->vdev set) moves reach it;
 * vfio_pci_dma_buf_cleanup() takes it off and makes it forget the device for
 * good, release takes it off when its file goes and no in-process importer
 * (iommufd) holds it any more.
 */
export class VfioDmaBuf {
  #bufferId: bigint | undefined;
  #list: Set<VfioDmaBuf> | undefined;
  #released = false;
  #forgotten = false;
  revoked: boolean;
  /** dma_buf_pin() calls not yet undone (the pin variant). */
  pins = 0;
  /** Importers inside vfio-pci (iommufd's MAP_FILE areas), each holding a reference to the buffer. */
  readonly #importers = new Set<InProcessImporter>();

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

  get importers(): ReadonlySet<InProcessImporter> {
    return this.#importers;
  }

  /** dma_buf_get() + dma_buf_dynamic_attach() by an in-process importer: it holds the buffer until detachImporter(). */
  attachImporter(importer: InProcessImporter): void {
    this.#importers.add(importer);
  }

  /** dma_buf_detach() + dma_buf_put(): the importer's reference may have been the last. */
  detachImporter(importer: InProcessImporter): void {
    this.#importers.delete(importer);
    if (this.#released) this.#unlist();
  }

  /**
   * The buffer's file is gone. vfio_pci_dma_buf_release() runs on the last
   * reference, and an in-process importer holds one: until it lets go the
   * buffer stays on its device's list, so a revoke still reaches it.
   */
  release(): void {
    this.#released = true;
    this.#unlist();
  }

  /** list_del_init(), once nothing holds the buffer, if cleanup has not done it already. */
  #unlist(): void {
    if (this.#importers.size > 0) return;
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
