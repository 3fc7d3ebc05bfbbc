import { errno, type ErrnoError } from '@p2p/errno';
import { IOMMU_APERTURE_END, IOMMU_MSI_WINDOW, IOMMU_PAGE_SIZE, type IommuPort, type IommuTarget } from '../ports/iommu-port';

export interface FakeMapping {
  readonly iova: bigint;
  readonly length: bigint;
  readonly prot: number;
  readonly target: IommuTarget;
}

export interface FakeDomain {
  readonly id: number;
  readonly devices: Set<string>;
  mappings: FakeMapping[];
}

const hex = (value: bigint): string => `0x${value.toString(16)}`;

/**
 * An IommuPort standing in for pci-emu's IOMMU: domains, attach (EBUSY when
 * attached already, EINVAL for a function `unreachable` names when the
 * domain maps a BAR, and the other way round), page-aligned maps inside the
 * aperture and clear of the MSI window (EINVAL), no overlap (EEXIST), and
 * unmaps that split what they cut. Every call that changes something is
 * appended to `log` (shared with the other fakes). `holdMaps()` and
 * `holdUnmaps()` make maps or unmaps wait; `failNextMap` makes the next map
 * reject.
 */
export class FakeIommu implements IommuPort {
  readonly domains = new Map<number, FakeDomain>();
  /** Functions that cannot reach any BAR peer to peer. */
  readonly unreachable = new Set<string>();
  failNextMap: ErrnoError | undefined;
  #nextId = 1;
  #mapGate: Promise<void> | undefined;
  #unmapGate: Promise<void> | undefined;

  constructor(readonly log: string[]) {}

  /** Maps wait (before they change anything) until the returned function is called. */
  holdMaps(): () => void {
    let open!: () => void;
    this.#mapGate = new Promise<void>((resolve) => (open = resolve));
    return () => {
      this.#mapGate = undefined;
      open();
    };
  }

  /** Unmaps wait until the returned function is called. */
  holdUnmaps(): () => void {
    let open!: () => void;
    this.#unmapGate = new Promise<void>((resolve) => (open = resolve));
    return () => {
      this.#unmapGate = undefined;
      open();
    };
  }

  /** Every mapping of every domain, as "domain:iova+length". */
  mapped(): string[] {
    return [...this.domains.values()].flatMap((domain) => domain.mappings.map((m) => `${domain.id}:${hex(m.iova)}+${hex(m.length)}`));
  }

  /** The domain `bdf` is attached to. */
  domainOf(bdf: string): FakeDomain | undefined {
    return [...this.domains.values()].find((domain) => domain.devices.has(bdf));
  }

  async createDomain(): Promise<number> {
    const id = this.#nextId++;
    this.domains.set(id, { id, devices: new Set(), mappings: [] });
    this.log.push(`iommu create ${id}`);
    return id;
  }

  async destroyDomain(domainId: number): Promise<void> {
    const domain = this.#domain(domainId);
    if (domain.devices.size > 0) throw errno('EBUSY', `domain ${domainId} has devices attached`);
    this.domains.delete(domainId);
    this.log.push(`iommu destroy ${domainId}`);
  }

  async attach(domainId: number, bdf: string): Promise<void> {
    const domain = this.#domain(domainId);
    if (this.domainOf(bdf) !== undefined) throw errno('EBUSY', `${bdf} is attached already`);
    if (this.unreachable.has(bdf) && domain.mappings.some((m) => m.target.kind === 'bar')) throw errno('EINVAL', `${bdf} cannot reach a BAR domain ${domainId} maps`);
    domain.devices.add(bdf);
    this.log.push(`iommu attach ${domainId} ${bdf}`);
  }

  async detach(domainId: number, bdf: string): Promise<void> {
    const domain = this.#domain(domainId);
    if (!domain.devices.delete(bdf)) throw errno('EINVAL', `${bdf} is not attached to domain ${domainId}`);
    this.log.push(`iommu detach ${domainId} ${bdf}`);
  }

  async map(domainId: number, iova: bigint, length: bigint, prot: number, target: IommuTarget): Promise<void> {
    await this.#mapGate;
    const domain = this.#domain(domainId);
    const failure = this.failNextMap;
    this.failNextMap = undefined;
    if (failure !== undefined) throw failure;
    if (prot === 0 || (prot & ~3) !== 0) throw errno('EINVAL', `prot ${prot}`);
    if (length === 0n || iova % IOMMU_PAGE_SIZE !== 0n || length % IOMMU_PAGE_SIZE !== 0n) throw errno('EINVAL', `[${hex(iova)}, +${hex(length)}) is not page aligned`);
    const end = iova + length;
    if (end > IOMMU_APERTURE_END || (iova <= IOMMU_MSI_WINDOW.last && IOMMU_MSI_WINDOW.start < end)) throw errno('EINVAL', `[${hex(iova)}, +${hex(length)}) is not mappable`);
    if (domain.mappings.some((m) => m.iova < end && iova < m.iova + m.length)) throw errno('EEXIST', `[${hex(iova)}, +${hex(length)}) overlaps`);
    if (target.kind === 'bar' && [...domain.devices].some((bdf) => this.unreachable.has(bdf))) throw errno('EINVAL', `an attached function cannot reach ${target.bdf}`);
    if (target.kind === 'host' && target.extents.reduce((sum, e) => sum + e.length, 0) !== Number(length)) throw errno('EINVAL', 'extents do not add up');
    domain.mappings = [...domain.mappings, { iova, length, prot, target }].sort((a, b) => (a.iova < b.iova ? -1 : 1));
    this.log.push(`iommu map ${domainId} ${hex(iova)}+${hex(length)} ${target.kind === 'bar' ? `bar ${target.bdf}/${target.bar}@${hex(target.offset)}` : 'host'}`);
  }

  async unmap(domainId: number, iova: bigint, length: bigint): Promise<bigint> {
    this.#domain(domainId);
    this.log.push(`iommu unmapping ${domainId} ${hex(iova)}+${hex(length)}`);
    await this.#unmapGate;
    const domain = this.#domain(domainId);
    const end = iova + length;
    let unmapped = 0n;
    const kept: FakeMapping[] = [];
    for (const m of domain.mappings) {
      const mEnd = m.iova + m.length;
      if (mEnd <= iova || end <= m.iova) {
        kept.push(m);
        continue;
      }
      const from = m.iova > iova ? m.iova : iova;
      const to = mEnd < end ? mEnd : end;
      unmapped += to - from;
      if (m.iova < iova) kept.push({ ...m, length: iova - m.iova });
      if (mEnd > end) kept.push({ ...m, iova: end, length: mEnd - end });
    }
    domain.mappings = kept.sort((a, b) => (a.iova < b.iova ? -1 : 1));
    this.log.push(`iommu unmapped ${domainId} ${hex(iova)}+${hex(length)}`);
    return unmapped;
  }

  #domain(id: number): FakeDomain {
    const domain = this.domains.get(id);
    if (domain === undefined) throw errno('ENOENT', `no domain ${id}`);
    return domain;
  }
}
