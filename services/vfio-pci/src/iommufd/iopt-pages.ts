import { errno } from '@p2p/errno';
import type { InProcessImporter } from '../dma-buf/in-process-importer';
import type { VfioDmaBuf } from '../dma-buf/vfio-dma-buf';
import { IOMMU_READ, IOMMU_WRITE, type HostExtent, type IommuPort } from '../ports/iommu-port';
import type { PinnedUserMemory, UserMemoryPort } from '../ports/user-memory-port';
import { PAGE_SIZE } from '../uapi/u64';
import { Mutex } from './mutex';

/** enum iopt_address_type. */
export type IoptAddressType = 'user' | 'file' | 'dmabuf';

/** What pages need of an area that maps them: its IOVAs, the bytes of the pages it maps and its prot. */
export interface AreaSpan {
  readonly iova: bigint;
  readonly length: bigint;
  /** Offset of the area's first byte from the pages' origin. */
  readonly startByte: bigint;
  /** IOMMU_READ | IOMMU_WRITE. */
  readonly prot: number;
}

const alignDown = (value: bigint): bigint => value - (value % PAGE_SIZE);
const alignUp = (value: bigint): bigint => alignDown(value + PAGE_SIZE - 1n);

/**
 * struct iopt_pages: the memory behind one or more areas (IOAS_COPY shares
 * it), from a page-aligned origin (the user address, file offset or dma-buf
 * offset rounded down) for startByte + length bytes. Referenced by its
 * areas; the last put releases it. Pinned (the storage pin) while any of its
 * areas is in an IOAS with a domain: iommufd pins lazily.
 */
export abstract class IoptPages {
  abstract readonly type: IoptAddressType;
  #refs = 0;

  constructor(
    protected readonly iommu: IommuPort,
    /** Page-aligned: the address or offset byte offsets count from. */
    readonly origin: bigint,
    /** The first byte's offset from the origin (less than a page). */
    readonly startByte: bigint,
    readonly length: bigint,
    readonly writable: boolean,
  ) {}

  /** A dma-buf's pages after a revoke: mapped nowhere, for good. */
  get revoked(): boolean {
    return false;
  }

  /** kref_get(): an area uses the pages. */
  get(): void {
    this.#refs++;
  }

  /** kref_put(): the last area's put releases the pages (iopt_release_pages()). */
  async put(): Promise<void> {
    if (--this.#refs === 0) await this.release();
  }

  /** Pins the pages for one more area in a domain (only the first pin touches the memory). */
  abstract pin(): Promise<void>;
  /** Undoes one pin; the last unpins the memory. */
  abstract unpin(): Promise<void>;
  /** iopt_area_fill_domain(): maps the area's part of the pages into a domain (pinned already). */
  abstract mapArea(domainId: number, area: AreaSpan): Promise<void>;
  /** iopt_area_unmap_domain(): the area's part leaves a domain. */
  abstract unmapArea(domainId: number, area: AreaSpan): Promise<void>;
  protected abstract release(): Promise<void>;
}

/** The domain maps nothing without IOMMU_READ or IOMMU_WRITE: the platform takes neither 0 nor IOMMU_CACHE alone. */
const mapsAnything = (prot: number): boolean => (prot & (IOMMU_READ | IOMMU_WRITE)) !== 0;

/** The extents of bytes [offset, offset + length) of extents laid end to end. */
function sliceExtents(extents: readonly HostExtent[], offset: bigint, length: bigint): HostExtent[] {
  const from = Number(offset);
  const to = from + Number(length);
  const pieces: HostExtent[] = [];
  let at = 0;
  for (const extent of extents) {
    const start = Math.max(from, at);
    const end = Math.min(to, at + extent.length);
    if (start < end) pieces.push({ segment: extent.segment, offset: extent.offset + start - at, length: end - start });
    at += extent.length;
    if (at >= to) break;
  }
  return pieces;
}

/**
 * IOPT_ADDRESS_USER: a process's memory from IOMMU_IOAS_MAP or
 * VFIO_IOMMU_MAP_DMA, pinned through the UserMemoryPort
 * (pin_user_pages(FOLL_LONGTERM)) when first needed. The process is the
 * one that mapped (pages->source_mm = current->mm).
 */
export class UserPages extends IoptPages {
  readonly type = 'user';
  #pinUsers = 0;
  #pinned: Promise<PinnedUserMemory> | undefined;

  constructor(
    iommu: IommuPort,
    private readonly memory: UserMemoryPort,
    readonly pid: number,
    userVa: bigint,
    length: bigint,
    writable: boolean,
  ) {
    super(iommu, alignDown(userVa), userVa % PAGE_SIZE, length, writable);
  }

  async pin(): Promise<void> {
    this.#pinUsers++;
    this.#pinned ??= this.memory.pin(this.pid, this.origin, alignUp(this.startByte + this.length), this.writable);
    try {
      await this.#pinned;
    } catch (error) {
      if (--this.#pinUsers === 0) this.#pinned = undefined;
      throw error;
    }
  }

  async unpin(): Promise<void> {
    if (--this.#pinUsers > 0) return;
    const pinned = this.#pinned;
    this.#pinned = undefined;
    await (await pinned)?.unpin();
  }

  async mapArea(domainId: number, area: AreaSpan): Promise<void> {
    if (!mapsAnything(area.prot)) return;
    const pinned = await this.#pinned!;
    await this.iommu.map(domainId, area.iova, area.length, area.prot, { kind: 'host', extents: sliceExtents(pinned.extents, area.startByte, area.length) });
  }

  async unmapArea(domainId: number, area: AreaSpan): Promise<void> {
    if (!mapsAnything(area.prot)) return;
    await this.iommu.unmap(domainId, area.iova, area.length);
  }

  protected async release(): Promise<void> {}
}

/**
 * IOPT_ADDRESS_FILE: a file that is not a dma-buf (IOMMU_IOAS_MAP_FILE of a
 * memfd). memfd_pin_folios() takes only shmem and hugetlbfs files, and no
 * process of the model holds one: every file here is some other kind (a
 * device file, a verbs context, an iommufd), so pinning fails with EINVAL.
 * Like the kernel, the map itself succeeds until pinning is needed (a
 * domain is attached).
 */
export class FilePages extends IoptPages {
  readonly type = 'file';

  constructor(
    iommu: IommuPort,
    readonly fd: number,
    start: bigint,
    length: bigint,
    writable: boolean,
  ) {
    super(iommu, alignDown(start), start % PAGE_SIZE, length, writable);
  }

  async pin(): Promise<void> {
    throw errno('EINVAL', `memfd_pin_folios(): fd ${this.fd} is not a shmem or hugetlbfs file`);
  }

  async unpin(): Promise<void> {}

  async mapArea(): Promise<void> {}

  async unmapArea(): Promise<void> {}

  protected async release(): Promise<void> {}
}

/**
 * IOPT_ADDRESS_DMABUF: a range of a vfio dma-buf (single range) imported by
 * IOMMU_IOAS_MAP_FILE, mapped as MMIO: the BAR itself is the target (P2P),
 * nothing is pinned or accounted. Each (area, domain) it is mapped into is
 * tracked (pages->dmabuf.tracker), so a revoke (iopt_revoke_notify())
 * unmaps it from every domain before the revoke returns, and for good: the
 * revoked pages are never mapped again (map and unmap are skipped), until
 * userspace unmaps the area and maps the buffer afresh.
 */
export class DmaBufPages extends IoptPages implements InProcessImporter {
  readonly type = 'dmabuf';
  /** pages->mutex: the revoke and every map or unmap of these pages take it. */
  readonly #mutex = new Mutex();
  readonly #tracker = new Map<AreaSpan, Set<number>>();
  /** pages->dmabuf.phys.len == 0. */
  #revoked = false;
  /** The BAR offset the origin is at. */
  readonly #barOffset: bigint;

  constructor(
    iommu: IommuPort,
    readonly buffer: VfioDmaBuf,
    start: bigint,
    length: bigint,
    writable: boolean,
  ) {
    super(iommu, alignDown(start), start % PAGE_SIZE, length, writable);
    this.#barOffset = buffer.phys[0]!.offset + this.origin;
  }

  override get revoked(): boolean {
    return this.#revoked;
  }

  /**
   * dma_buf_dynamic_attach() with iopt_revoke_notify as move_notify, and
   * vfio_pci_dma_buf_iommufd_map(): vfio_pci_dma_buf_attach() refuses a
   * revoked buffer (ENODEV), then the buffer must be one range
   * (EOPNOTSUPP). Both read the bit the revoke sets and the registration
   * happens in the same step, so a revoke either comes first (ENODEV) or
   * reaches these pages.
   */
  attach(): void {
    if (this.buffer.revoked) throw errno('ENODEV', `dma-buf ${this.buffer.handle} is revoked`);
    if (this.buffer.phys.length !== 1) {
      throw errno('EOPNOTSUPP', `dma-buf ${this.buffer.handle} has ${this.buffer.phys.length} ranges: iommufd maps only a single-range vfio dma-buf`);
    }
    this.buffer.attachImporter(this);
  }

  async pin(): Promise<void> {}

  async unpin(): Promise<void> {}

  async mapArea(domainId: number, area: AreaSpan): Promise<void> {
    await this.#mutex.run(async () => {
      if (this.#revoked) return;
      const target = { kind: 'bar' as const, bdf: this.buffer.providerBdf, bar: this.buffer.bar.index, offset: this.#barOffset + area.startByte };
      await this.iommu.map(domainId, area.iova, area.length, area.prot, target);
      let domains = this.#tracker.get(area);
      if (domains === undefined) this.#tracker.set(area, (domains = new Set()));
      domains.add(domainId);
    });
  }

  async unmapArea(domainId: number, area: AreaSpan): Promise<void> {
    await this.#mutex.run(async () => {
      const domains = this.#tracker.get(area);
      if (domains?.has(domainId) !== true) return;
      domains.delete(domainId);
      if (domains.size === 0) this.#tracker.delete(area);
      if (!this.#revoked) await this.iommu.unmap(domainId, area.iova, area.length);
    });
  }

  /** iopt_revoke_notify(): unmaps every tracked (area, domain) and marks the pages revoked for good. */
  moveNotify(): Promise<void> {
    return this.#mutex.run(async () => {
      if (this.#revoked) return;
      this.#revoked = true;
      const unmaps = [...this.#tracker].flatMap(([area, domains]) => [...domains].map((domainId) => this.#unmapQuietly(domainId, area)));
      await Promise.all(unmaps);
    });
  }

  /** iommu_unmap() cannot fail in the kernel; a platform that does not answer has no DMA left to stop. */
  async #unmapQuietly(domainId: number, area: AreaSpan): Promise<void> {
    await this.iommu.unmap(domainId, area.iova, area.length).catch(() => undefined);
  }

  protected async release(): Promise<void> {
    this.buffer.detachImporter(this);
  }
}
