import { errno } from '@p2p/errno';
import type { IommuPort } from '../ports/iommu-port';
import type { UserMemoryPort } from '../ports/user-memory-port';
import { Mutex } from './mutex';
import { type HwptPaging, Ioas, type IommufdObject } from './objects';

/** Objects in one context at most: past it an allocation fails as the kernel's would (ENOMEM). */
export const MAX_IOMMUFD_OBJECTS = 1024;

/** Which node the context was opened through; both are the same iommufd (the type1 ioctls work on either). */
export type IommufdNode = 'iommu' | 'vfio-container';

export interface IommufdPorts {
  readonly iommu: IommuPort;
  readonly userMemory: UserMemoryPort;
}

/**
 * struct iommufd_ctx: one open /dev/iommu (or /dev/vfio/vfio), its object
 * table (ids from 1, the lowest free one first, as xa_alloc() with
 * XA_FLAGS_ALLOC1 hands them out) and the compat IOAS of the type1 ioctls.
 * The file holds it, and so does every device bound to it
 * (iommufd_ctx_get()): it is torn down when the file is released and the
 * last device unbound, in either order. Ioctls run one at a time under
 * `lock`.
 */
export class IommufdCtx {
  readonly lock = new Mutex();
  /** null: an id allocated for an object still being created (XA_ZERO_ENTRY). */
  readonly #objects = new Map<number, IommufdObject | null>();
  /** ictx->vfio_ioas. */
  vfioIoas: Ioas | undefined;
  #fileOpen = true;
  #boundDevices = 0;
  #dead = false;

  constructor(
    readonly handle: string,
    /** The process that opened it. */
    readonly pid: number,
    readonly node: IommufdNode,
    readonly ports: IommufdPorts,
  ) {}

  /** Torn down: released and every device unbound. */
  get dead(): boolean {
    return this.#dead;
  }

  get fileOpen(): boolean {
    return this.#fileOpen;
  }

  get boundDevices(): number {
    return this.#boundDevices;
  }

  /** Live objects by id. */
  objects(): IommufdObject[] {
    return [...this.#objects.entries()]
      .sort(([a], [b]) => a - b)
      .flatMap(([, object]) => (object === null ? [] : [object]));
  }

  /** xa_alloc(): the lowest free id, reserved until finalize() or abort(); ENOMEM past MAX_IOMMUFD_OBJECTS. */
  allocateId(): number {
    if (this.#objects.size >= MAX_IOMMUFD_OBJECTS) {
      throw errno('ENOMEM', `the context holds ${this.#objects.size} objects: at most ${MAX_IOMMUFD_OBJECTS}`);
    }
    let id = 1;
    while (this.#objects.has(id)) id++;
    this.#objects.set(id, null);
    return id;
  }

  /** iommufd_object_finalize(): the object becomes visible under its id. */
  finalize(object: IommufdObject): void {
    this.#objects.set(object.id, object);
  }

  /** iommufd_object_abort(): the id is free again. */
  abort(id: number): void {
    if (this.#objects.get(id) === null) this.#objects.delete(id);
  }

  /** iommufd_get_object(IOMMUFD_OBJ_ANY): ENOENT if no object has the id. */
  get(id: number): IommufdObject {
    const object = this.#objects.get(id);
    if (object === undefined || object === null) throw errno('ENOENT', `no object ${id} in the iommufd`);
    return object;
  }

  /** iommufd_get_ioas(): a typed lookup, so an id of another type is ENOENT too. */
  getIoas(id: number): Ioas {
    const object = this.#objects.get(id);
    if (object === undefined || object === null || object.type !== 'ioas') {
      throw errno('ENOENT', object === undefined || object === null ? `no object ${id} in the iommufd` : `object ${id} is a ${object.type}, not an IOAS`);
    }
    return object;
  }

  /** IOMMU_IOAS_ALLOC's object: a new empty IOAS. */
  allocIoas(): Ioas {
    const ioas = new Ioas(this.allocateId());
    this.finalize(ioas);
    return ioas;
  }

  /**
   * IOMMU_DESTROY (iommufd_object_remove()): ENOENT for an unknown id,
   * EBUSY while anything else holds the object (an IOAS with a domain, a
   * HWPT with a device, any device: vfio holds it until unbind). Destroying
   * the compat IOAS leaves the type1 ioctls without one (ENODEV).
   */
  async destroy(id: number): Promise<void> {
    const object = this.get(id);
    if (object.users > 0) throw errno('EBUSY', `object ${id} (${object.type}) is in use`);
    await this.destroyObject(object);
  }

  /** The object's destroy op, after it left the table: an IOAS unmaps everything, a HWPT frees its domain. */
  async destroyObject(object: IommufdObject): Promise<void> {
    this.#objects.delete(object.id);
    if (object.type === 'ioas') {
      if (this.vfioIoas === object) this.vfioIoas = undefined;
      await object.iopt.unmapAll();
    } else if (object.type === 'hwpt-paging') {
      await this.#destroyHwpt(object);
    }
  }

  /** A device bound to the context holds it. */
  deviceBound(): void {
    this.#boundDevices++;
  }

  /** A device's reference is dropped: the last one, after the file's release, tears the context down. */
  async deviceUnbound(): Promise<void> {
    this.#boundDevices--;
    if (!this.#fileOpen && this.#boundDevices === 0) await this.#release();
  }

  /** The file's last fd is closed: torn down now, or when the last bound device lets go. */
  async fileReleased(): Promise<void> {
    this.#fileOpen = false;
    if (this.#boundDevices === 0) await this.#release();
  }

  /**
   * iommufd_fops_release(): destroys leaves (objects no one else holds),
   * lowest id first, pass after pass, until none is left: the HWPTs (their
   * domains leave the IOAS), then the IOAS (every area unmapped and
   * unpinned, every dma-buf import dropped). Every object is handled even
   * if the platform fails a call; the first failure is thrown at the end.
   */
  async #release(): Promise<void> {
    this.#dead = true;
    let failure: unknown;
    for (;;) {
      const leaves = this.objects().filter((object) => object.users === 0);
      if (leaves.length === 0) break;
      for (const leaf of leaves) await this.destroyObject(leaf).catch((error: unknown) => (failure ??= error));
    }
    this.#objects.clear();
    if (failure !== undefined) throw failure;
  }

  /** The HWPT's domain leaves its IOAS and is freed. */
  async #destroyHwpt(hwpt: HwptPaging): Promise<void> {
    hwpt.ioas.hwpts.delete(hwpt);
    let failure: unknown;
    await hwpt.ioas.iopt.removeDomain(hwpt.domainId).catch((error: unknown) => (failure ??= error));
    await this.ports.iommu.destroyDomain(hwpt.domainId).catch((error: unknown) => (failure ??= error));
    if (failure !== undefined) throw failure;
  }
}
