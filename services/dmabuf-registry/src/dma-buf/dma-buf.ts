import { errno } from '@p2p/errno';
import type { FileLayer } from '../files/file-layer';
import { RegistryFile, type FileKind } from '../files/registry-file';
import type { OwnerRecord } from '../owners/owner-record';
import type { Attachment } from './attachment';
import { ReservationLock } from './reservation-lock';

/** What the exporter says about a buffer at dma_buf_export() time. */
export interface DmaBufProperties {
  readonly size: number;
  /** CPU access (read, write, mmap) allowed: the buffer has an ->mmap op. */
  readonly cpuAccess: boolean;
  /** The PCI function whose BAR is the memory; empty for host memory. */
  readonly providerBdf: string;
  /** Static importers may pin (the seed's variant; upstream vfio has no ->pin). */
  readonly allowPin: boolean;
  /** Importers must be dynamic and allow peer2peer (vfio_pci_dma_buf_attach). */
  readonly requirePeer2peer: boolean;
}

/**
 * struct dma_buf: a file whose owner is its exporter, with the attachments
 * of its importers and its reservation lock. `bufferId` is the file id.
 * Kept small: ten thousand live buffers must be cheap.
 */
export class DmaBuf extends RegistryFile {
  readonly resv = new ReservationLock();
  /** In attach order (the kernel's dmabuf->attachments list). */
  readonly attachments: Attachment[] = [];
  readonly size: number;
  readonly cpuAccess: boolean;
  readonly providerBdf: string;
  readonly allowPin: boolean;
  readonly requirePeer2peer: boolean;
  /** pin_user_pages() pins on this buffer's pages; each also holds a reference to it. */
  userPins = 0;
  #revoked: boolean;
  #forgotten = false;

  constructor(
    fileId: number,
    owner: OwnerRecord,
    handle: string,
    openFlags: number,
    properties: DmaBufProperties,
    revoked: boolean,
  ) {
    super(fileId, owner, handle, openFlags);
    this.size = properties.size;
    this.cpuAccess = properties.cpuAccess;
    this.providerBdf = properties.providerBdf;
    this.allowPin = properties.allowPin;
    this.requirePeer2peer = properties.requirePeer2peer;
    this.#revoked = revoked;
  }

  override get kind(): FileKind {
    return 'dma-buf';
  }

  get bufferId(): number {
    return this.fileId;
  }

  get revoked(): boolean {
    return this.#revoked;
  }

  /**
   * Revoked for good: the exporter closed the device (a permanent move) or
   * its service died. Either way nobody will map it again.
   */
  get orphaned(): boolean {
    return this.#forgotten || !this.owner.alive;
  }

  /** True once a permanent move has been applied (the exporter forgot the buffer). */
  get forgotten(): boolean {
    return this.#forgotten;
  }

  /** The revoked bit vfio_pci_dma_buf_move() flips; call with the reservation lock held. */
  setRevoked(revoked: boolean): void {
    this.#revoked = revoked;
  }

  /** vfio_pci_dma_buf_cleanup(): revoked, and the exporter lets go of it. */
  forget(): void {
    this.#revoked = true;
    this.#forgotten = true;
  }

  /** ENODEV unless the memory is reachable: not revoked and not orphaned. */
  checkReachable(what: string): void {
    if (this.orphaned) throw errno('ENODEV', `${what}: dma-buf ${this.fileId} is orphaned (its exporter is gone)`);
    if (this.#revoked) throw errno('ENODEV', `${what}: dma-buf ${this.fileId} is revoked`);
  }
}

/** dma_buf_get(fd) without the reference: EBADF if `pid` does not hold `fd`, EINVAL if it is not a dma-buf. */
export function dmaBufAt(files: FileLayer, pid: number, fd: number): DmaBuf {
  const file = files.fileAt(pid, fd);
  if (!(file instanceof DmaBuf)) throw errno('EINVAL', `fd ${fd} of pid ${pid} is not a dma-buf (it is ${file.owner.name}'s file ${file.fileId})`);
  return file;
}
