import { randomInt } from 'node:crypto';
import { errno } from '@p2p/errno';
import { validateSegmentName } from '@p2p/shm';
import { memoryOffsetOf, memoryRangeOf } from '../bus/bar-memory-range';
import type { FunctionInfo } from '../bus/function-info';
import type { PciEventBody } from '../bus/pci-events';
import { canonicalBdf } from '../topology/bdf';
import { p2pDistance } from '../topology/p2p-distance';
import type { Topology } from '../topology/topology';
import type { HostMemory, HostSegment } from './host-memory';
import { IommuDomain } from './iommu-domain';
import { IommuFault, type IommuFaultRecord } from './iommu-fault';
import { type HostExtent, type IommuMapping, type MappingTarget, heldSegments, subMapping } from './iommu-mapping';
import { checkIovaRange, clipToAperture, IOMMU_PAGE_SIZE, IOMMU_READ, IOMMU_WRITE, IOVA_APERTURE_END, mappableRange } from './iova';

/** Live domains at most (ENOSPC past it). */
export const MAX_IOMMU_DOMAINS = 256;
/** Mappings in one domain at most (ENOSPC past it). */
export const MAX_DOMAIN_MAPPINGS = 65536;
/** Extents of one host mapping at most (E2BIG past it). */
export const MAX_HOST_EXTENTS = 4096;
/** Domain ids stay below 2^32 (uint32 on the wire): a first id below 2^31 leaves 2^31 creations to go. */
const FIRST_DOMAIN_ID_LIMIT = 2 ** 31;

/** What the IOMMU needs of the platform around it. */
export interface IommuPlatform {
  readonly topology: Topology;
  /** The function at `bdf`: EINVAL if malformed, ENODEV if there is none. */
  getFunction(bdf: string): FunctionInfo;
  readonly hostMemory: HostMemory;
  /** Queues an event; it is delivered when the outermost batch ends. */
  post(event: PciEventBody): void;
  batch<T>(operation: () => T): T;
}

export type DmaAccess = 'read' | 'write';

/** A translated piece: IOVAs [iova, iova + length) and the memory they lead to. */
export type IommuPiece = { readonly iova: number; readonly length: number } & (
  | { readonly kind: 'host'; readonly segment: HostSegment; readonly offset: number }
  | { readonly kind: 'bar'; readonly bdf: string; readonly bar: number; readonly offset: number }
);

export interface IommuDomainInfo {
  readonly id: number;
  /** Attached functions, sorted. */
  readonly devices: readonly string[];
  /** By IOVA. */
  readonly mappings: readonly IommuMapping[];
  readonly mappedBytes: number;
}

const isPageMultiple = (value: number): boolean => Number.isSafeInteger(value) && value >= 0 && value % IOMMU_PAGE_SIZE === 0;

/**
 * The platform IOMMU: one iommu_group per function (ACS everywhere, so no
 * two functions share a group), domains the platform creates, attaches
 * functions to and fills with iommu_map(), and the translation every DMA
 * goes through. A function attached to no domain is blocked: its DMA faults.
 * Every failure is an ErrnoError and changes nothing; a failed translation
 * is also reported, as an iommu-fault event, before it is thrown.
 */
export class Iommu {
  readonly #domains = new Map<number, IommuDomain>();
  /** The domain of each attached function's group. */
  readonly #attached = new Map<string, IommuDomain>();
  /**
   * The next domain's id. The first is drawn at random, as the segment
   * names' instance tag is, so that a restarted platform does not hand out
   * the ids of the one before: a client still holding one (vfio-pci, for a
   * process's IOAS) then reaches nothing (ENOENT) instead of another
   * process's domain.
   */
  #nextId = randomInt(1, FIRST_DOMAIN_ID_LIMIT);

  constructor(private readonly platform: IommuPlatform) {}

  /** iommu_paging_domain_alloc(): a new empty domain; ids are never reused, from the first one up. */
  createDomain(): number {
    if (this.#domains.size >= MAX_IOMMU_DOMAINS) {
      throw errno('ENOSPC', `${MAX_IOMMU_DOMAINS} IOMMU domains exist already`);
    }
    const domain = new IommuDomain(this.#nextId++);
    this.#domains.set(domain.id, domain);
    return domain.id;
  }

  /** iommu_domain_free(): unmaps everything. EBUSY while a function is attached (iommufd's refcount on the hwpt). */
  destroyDomain(id: number): void {
    const domain = this.#domain(id);
    if (domain.devices.size > 0) {
      throw errno('EBUSY', `IOMMU domain ${id} still has ${[...domain.devices].sort().join(', ')} attached`);
    }
    this.platform.batch(() => {
      const unmapped = domain.mappedBytes;
      for (const mapping of domain.mappings) this.#release(mapping.target);
      this.#domains.delete(id);
      if (unmapped > 0) {
        this.platform.post({ type: 'iommu-unmapped', bdf: '', domainId: id, iova: 0, length: IOVA_APERTURE_END, unmapped, devices: [] });
      }
    });
  }

  /**
   * iommu_attach_group(). EBUSY if the function's group has a domain
   * already, this one included (__iommu_attach_group() refuses any group
   * whose domain is not its default or blocking one); EINVAL if the domain
   * maps a BAR the function cannot reach peer-to-peer.
   */
  attach(id: number, bdf: string): void {
    const domain = this.#domain(id);
    const fn = this.#present(bdf);
    const current = this.#attached.get(fn.bdf);
    if (current !== undefined) {
      throw errno('EBUSY', `${fn.bdf} is attached to IOMMU domain ${current.id}: detach it first`);
    }
    for (const mapping of domain.mappings) {
      if (mapping.target.kind === 'bar') this.#checkReach(mapping.target.bdf, [fn.bdf]);
    }
    domain.devices.add(fn.bdf);
    this.#attached.set(fn.bdf, domain);
  }

  /**
   * iommu_detach_group(): the function is left blocked. The kernel only
   * WARNs when the group is not on that domain; a call that cannot apply is
   * EINVAL here. Detaching an unplugged function succeeds: its removal
   * detached it already (release()).
   */
  detach(id: number, bdf: string): void {
    const domain = this.#domain(id);
    const fn = this.platform.getFunction(bdf);
    const canonical = fn.bdf;
    if (!fn.present && !this.#attached.has(canonical)) return;
    if (this.#attached.get(canonical) !== domain) {
      throw errno('EINVAL', `${canonical} is not attached to IOMMU domain ${id}`);
    }
    domain.devices.delete(canonical);
    this.#attached.delete(canonical);
  }

  /**
   * iommu_release_device(), on hot-unplug: the function leaves its group
   * and with it the group's domain, which stays with its owner. A function
   * plugged back in starts blocked, as a newly probed device does.
   */
  release(bdf: string): void {
    const canonical = canonicalBdf(bdf);
    this.#attached.get(canonical)?.devices.delete(canonical);
    this.#attached.delete(canonical);
  }

  /**
   * iommu_map(): [iova, iova + length) to `target` with `prot`. Checks, in
   * order: the domain (ENOENT); prot as iommufd_ioas_map() checks its flags
   * (unknown bits EOPNOTSUPP, neither READ nor WRITE EINVAL); the range
   * (checkIovaRange(), mappableRange()); no overlap (EEXIST, as the page
   * table refuses a present PTE); the domain's size (ENOSPC); the target.
   */
  map(id: number, iova: bigint, length: bigint, prot: number, target: MappingTarget): void {
    this.platform.batch(() => {
      const domain = this.#domain(id);
      checkProt(prot);
      const what = `iommu_map(domain ${id})`;
      checkIovaRange(iova, length, what);
      const range = mappableRange(iova, length, what);
      const clash = domain.overlapping(range.iova, range.iova + range.length)[0];
      if (clash !== undefined) {
        throw errno('EEXIST', `${what}: [0x${range.iova.toString(16)}, +0x${range.length.toString(16)}) overlaps the mapping at 0x${clash.iova.toString(16)}`);
      }
      if (domain.mappings.length >= MAX_DOMAIN_MAPPINGS) {
        throw errno('ENOSPC', `${what}: the domain holds ${MAX_DOMAIN_MAPPINGS} mappings already`);
      }
      const checked = target.kind === 'bar' ? this.#barTarget(domain, target, range.length) : this.#holdHost(target.extents, range.length);
      domain.replace([], [{ ...range, prot, target: checked }]);
      this.platform.post({ type: 'iommu-mapped', bdf: '', domainId: id, ...range, prot, devices: [...domain.devices].sort() });
    });
  }

  /**
   * iommu_unmap(): clears every mapped page of [iova, iova + length) and
   * returns how many bytes were mapped there (0 if none, not an error). This
   * is the page table, not iommufd's areas: a range that cuts a mapping
   * splits it and the pages outside the range stay mapped (type1 and
   * iommufd refuse such a cut above this layer).
   */
  unmap(id: number, iova: bigint, length: bigint): number {
    return this.platform.batch(() => {
      const domain = this.#domain(id);
      checkIovaRange(iova, length, `iommu_unmap(domain ${id})`);
      const range = clipToAperture(iova, length);
      if (range === undefined) return 0;
      const end = range.iova + range.length;
      const removed = domain.overlapping(range.iova, end);
      if (removed.length === 0) return 0;
      const first = removed[0]!;
      const last = removed[removed.length - 1]!;
      const kept: IommuMapping[] = [];
      if (first.iova < range.iova) kept.push(subMapping(first, first.iova, range.iova));
      if (last.iova + last.length > end) kept.push(subMapping(last, end, last.iova + last.length));
      if (domain.mappings.length - removed.length + kept.length > MAX_DOMAIN_MAPPINGS) {
        throw errno('ENOSPC', `iommu_unmap(domain ${id}): splitting would leave more than ${MAX_DOMAIN_MAPPINGS} mappings`);
      }
      // Hold the kept pieces before releasing the originals, so no file is closed and reopened.
      for (const mapping of kept) this.#hold(mapping.target);
      for (const mapping of removed) this.#release(mapping.target);
      const before = domain.mappedBytes;
      domain.replace(removed, kept);
      const unmapped = before - domain.mappedBytes;
      this.platform.post({ type: 'iommu-unmapped', bdf: '', domainId: id, ...range, unmapped, devices: [...domain.devices].sort() });
      return unmapped;
    });
  }

  /**
   * The memory behind [iova, iova + length) for a DMA by `bdf`, in order.
   * No domain, an unmapped page or a missing permission is an IOMMU fault:
   * reported as an iommu-fault event, then thrown as IommuFault (EFAULT),
   * at the first IOVA that failed.
   */
  translate(bdf: string, iova: bigint, length: number, access: DmaAccess): IommuPiece[] {
    return this.platform.batch(() => {
      const requester = canonicalBdf(bdf);
      if (!Number.isSafeInteger(length) || length <= 0 || iova < 0n) {
        throw errno('EINVAL', `translate: IOVA ${iova} and length ${length} must be non-negative, length at least 1`);
      }
      const write = access === 'write';
      const fault = (domainId: number, at: bigint, reason: IommuFaultRecord['reason']): never => this.#fault({ bdf: requester, domainId, iova: at, write, reason });
      const domain = this.#attached.get(requester);
      if (domain === undefined) return fault(0, iova, 'NO_DOMAIN');
      if (iova >= BigInt(IOVA_APERTURE_END)) return fault(domain.id, iova, 'NOT_MAPPED');
      const need = write ? IOMMU_WRITE : IOMMU_READ;
      const pieces: IommuPiece[] = [];
      const end = Number(iova) + length;
      for (let at = Number(iova); at < end; ) {
        const mapping = domain.lookup(at);
        if (mapping === undefined) return fault(domain.id, BigInt(at), 'NOT_MAPPED');
        if ((mapping.prot & need) === 0) return fault(domain.id, BigInt(at), 'PERMISSION');
        const to = Math.min(end, mapping.iova + mapping.length);
        pieces.push(...this.#pieces(subMapping(mapping, at, to)));
        at = to;
      }
      return pieces;
    });
  }

  /** The domain a function's DMA goes through, if any. */
  domainOf(bdf: string): number | undefined {
    return this.#attached.get(canonicalBdf(bdf))?.id;
  }

  /** Every domain by id, or just `id` (ENOENT if unknown). */
  listDomains(id?: number): IommuDomainInfo[] {
    const domains = id === undefined ? [...this.#domains.values()].sort((a, b) => a.id - b.id) : [this.#domain(id)];
    return domains.map((domain) => ({
      id: domain.id,
      devices: [...domain.devices].sort(),
      mappings: [...domain.mappings],
      mappedBytes: domain.mappedBytes,
    }));
  }

  /** Host segment files held open and mapped for the mappings of every domain. */
  get heldHostSegments(): number {
    return this.platform.hostMemory.held;
  }

  /** Drops every domain and every host segment held. */
  close(): void {
    this.#domains.clear();
    this.#attached.clear();
    this.platform.hostMemory.close();
  }

  #domain(id: number): IommuDomain {
    const domain = this.#domains.get(id);
    if (domain === undefined) throw errno('ENOENT', `no IOMMU domain ${id}`);
    return domain;
  }

  #present(bdf: string): FunctionInfo {
    const fn = this.platform.getFunction(bdf);
    if (!fn.present) throw errno('ENODEV', `${fn.bdf} has been hot-unplugged`);
    return fn;
  }

  /**
   * A BAR target: a present function's BAR memory (a memory BAR, or a
   * register BAR's window: registers are no DMA target), page-aligned,
   * holding the range, reachable by every attached function.
   */
  #barTarget(domain: IommuDomain, target: Extract<MappingTarget, { kind: 'bar' }>, length: number): MappingTarget {
    const fn = this.#present(target.bdf);
    const bar = fn.bars.find((b) => b.index === target.bar);
    if (bar === undefined) throw errno('EINVAL', `${fn.bdf} has no BAR ${target.bar}`);
    if (memoryRangeOf(bar) === undefined) throw errno('EINVAL', `BAR ${bar.index} of ${fn.bdf} is ${bar.kind}, not memory: only BAR memory can be a DMA target`);
    if (!isPageMultiple(target.offset)) {
      throw errno('EINVAL', `BAR offset ${target.offset} is not a multiple of the ${IOMMU_PAGE_SIZE}-byte page`);
    }
    if (target.offset + length > bar.size) {
      throw errno('EINVAL', `[0x${target.offset.toString(16)}, +0x${length.toString(16)}) runs past BAR ${bar.index} of ${fn.bdf} (${bar.size} bytes)`);
    }
    memoryOffsetOf(fn.bdf, bar, target.offset, length);
    this.#checkReach(fn.bdf, domain.devices);
    return { kind: 'bar', bdf: fn.bdf, bar: bar.index, offset: target.offset };
  }

  /**
   * Host extents: up to MAX_HOST_EXTENTS (E2BIG), each page-aligned and not
   * empty, adding up to the mapping (EINVAL), with a valid segment name
   * (EINVAL) of a file that exists (ENOENT) and holds it (EINVAL). Every
   * file is held on success and none on failure.
   */
  #holdHost(extents: readonly HostExtent[], length: number): MappingTarget {
    if (extents.length === 0) throw errno('EINVAL', 'a host mapping needs at least one extent');
    if (extents.length > MAX_HOST_EXTENTS) throw errno('E2BIG', `${extents.length} host extents exceed ${MAX_HOST_EXTENTS}`);
    let total = 0;
    for (const extent of extents) {
      validateSegmentName(extent.segment);
      if (!isPageMultiple(extent.offset) || !isPageMultiple(extent.length) || extent.length === 0) {
        throw errno('EINVAL', `extent of ${extent.segment} at ${extent.offset} with length ${extent.length}: offset and length must be page multiples, length not 0`);
      }
      total += extent.length;
    }
    if (total !== length) throw errno('EINVAL', `host extents cover ${total} bytes of a ${length}-byte mapping`);
    const held: string[] = [];
    try {
      for (const extent of extents) {
        const segment = this.platform.hostMemory.hold(extent.segment);
        held.push(extent.segment);
        if (extent.offset + extent.length > segment.size) {
          throw errno('EINVAL', `segment ${extent.segment} has ${segment.size} bytes: [${extent.offset}, +${extent.length}) runs past it`);
        }
      }
    } catch (error) {
      for (const name of held) this.platform.hostMemory.release(name);
      throw error;
    }
    return { kind: 'host', extents: extents.map((extent) => ({ segment: extent.segment, offset: extent.offset, length: extent.length })) };
  }

  /**
   * P2P as pci_p2pdma_distance() decides it for dma-buf maps: BUS_ADDR under
   * a common switch, THRU_HOST_BRIDGE where the bridge allows it, else
   * EINVAL (map_dma_buf's NOT_SUPPORTED).
   */
  #checkReach(provider: string, clients: Iterable<string>): void {
    for (const client of clients) {
      const distance = p2pDistance(this.platform.topology, provider, client);
      if (distance.mapType === 'NOT_SUPPORTED') {
        const route = distance.path.map((hop) => hop.id).join(' -> ');
        throw errno('EINVAL', `${client} cannot reach BAR memory of ${provider} peer-to-peer (NOT_SUPPORTED through ${route})`);
      }
    }
  }

  #pieces(mapping: IommuMapping): IommuPiece[] {
    const { target } = mapping;
    if (target.kind === 'bar') return [{ kind: 'bar', iova: mapping.iova, length: mapping.length, bdf: target.bdf, bar: target.bar, offset: target.offset }];
    let iova = mapping.iova;
    return target.extents.map((extent) => {
      const piece: IommuPiece = { kind: 'host', iova, length: extent.length, segment: this.platform.hostMemory.get(extent.segment), offset: extent.offset };
      iova += extent.length;
      return piece;
    });
  }

  #hold(target: MappingTarget): void {
    for (const name of heldSegments(target)) this.platform.hostMemory.hold(name);
  }

  #release(target: MappingTarget): void {
    for (const name of heldSegments(target)) this.platform.hostMemory.release(name);
  }

  #fault(record: IommuFaultRecord): never {
    const { bdf, ...body } = record;
    this.platform.post({ type: 'iommu-fault', bdf, ...body });
    throw new IommuFault(record);
  }
}

/** iommufd_ioas_map()'s flag checks, on the kernel's prot bits. */
function checkProt(prot: number): void {
  if (!Number.isInteger(prot) || (prot & ~(IOMMU_READ | IOMMU_WRITE)) !== 0) {
    throw errno('EOPNOTSUPP', `prot 0x${prot.toString(16)} has bits other than IOMMU_READ (1) and IOMMU_WRITE (2)`);
  }
  if (prot === 0) throw errno('EINVAL', 'prot has neither IOMMU_READ nor IOMMU_WRITE');
}
