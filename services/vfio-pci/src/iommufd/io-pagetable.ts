import { errno } from '@p2p/errno';
import { IOMMU_APERTURE_END, IOMMU_PAGE_SIZE, IOMMU_WRITE } from '../ports/iommu-port';
import { hex, PAGE_SIZE } from '../uapi/u64';
import type { AreaSpan, IoptPages } from './iopt-pages';
import { hexRange, intersects, type IovaRange, lowestBit, roundupPowOfTwo, spans, ULONG_MAX, usedSpans } from './iova-range';

/** Areas in one IOAS at most: past it a map fails as the area allocation would (ENOMEM). */
export const MAX_IOAS_AREAS = 4096;

/** HPAGE_SIZE (x86-64, THP on): the largest alignment iopt_alloc_iova() asks of an IOVA. */
const HPAGE_SIZE = 2n << 20n;

/** One element of a map: `length` bytes of `pages` from `startByte` past their origin (struct iopt_pages_list). */
export interface PagesSlice {
  readonly pages: IoptPages;
  readonly startByte: bigint;
  readonly length: bigint;
}

/**
 * struct iopt_area: [iova, iova + length) of an IOAS leading to bytes of
 * its pages, mapped into every domain of the IOAS (and its pages pinned)
 * while there is one.
 */
export class IoptArea implements AreaSpan {
  constructor(
    readonly pages: IoptPages,
    readonly iova: bigint,
    readonly length: bigint,
    readonly startByte: bigint,
    readonly prot: number,
  ) {}

  get last(): bigint {
    return this.iova + this.length - 1n;
  }

  /** area->page_offset. */
  get pageOffset(): bigint {
    return this.startByte % PAGE_SIZE;
  }
}

interface Reserved {
  readonly range: IovaRange;
  /** A domain's id (outside its aperture) or a device (its reserved regions). */
  readonly owner: unknown;
}

/** The reserved ranges of a domain: everything outside its aperture [0, 2^48). */
const APERTURE_RESERVED: readonly IovaRange[] = [{ start: IOMMU_APERTURE_END, last: ULONG_MAX }];

/**
 * struct io_pagetable: the IOVA space of one IOAS. Areas by IOVA, reserved
 * ranges (outside each domain's aperture, each attached device's reserved
 * regions), the allowed list (IOMMU_IOAS_ALLOW_IOVAS), and the domains the
 * areas are mapped into. Pinning is lazy: with no domain nothing is pinned
 * and nothing mapped; the first domain pins every area, the last to leave
 * unpins. Every error is the kernel's errno for the step that failed; a
 * failed map or domain change undoes what it did.
 */
export class IoPagetable {
  #areas: IoptArea[] = [];
  readonly #reserved: Reserved[] = [];
  #allowed: readonly IovaRange[] = [];
  readonly #domains: number[] = [];
  #disableLargePages = false;

  get areas(): readonly IoptArea[] {
    return this.#areas;
  }

  get domains(): readonly number[] {
    return this.#domains;
  }

  get largePagesDisabled(): boolean {
    return this.#disableLargePages;
  }

  /**
   * iopt->iova_alignment: 1 with no domain, else the smallest page of the
   * domains (4 KiB on this platform); PAGE_SIZE when large pages are
   * disabled (VFIO_SET_IOMMU(TYPE1)).
   */
  get iovaAlignment(): bigint {
    return this.#alignmentWith(this.#domains.length, this.#disableLargePages);
  }

  /** The holes of the reserved ranges over [0, ULONG_MAX], ascending: IOMMU_IOAS_IOVA_RANGES and the type1 IOVA_RANGE capability. */
  iovaRanges(): IovaRange[] {
    return spans(
      this.#reserved.map((r) => r.range),
      0n,
      ULONG_MAX,
    )
      .filter((span) => span.hole)
      .map(({ start, last }) => ({ start, last }));
  }

  /**
   * iopt_set_allow_iova(): the new allowed list replaces the old one, unless
   * a reserved range meets it (EADDRINUSE, the old list stays).
   */
  setAllowIovas(ranges: readonly IovaRange[]): void {
    for (const reserved of this.#reserved) {
      const clash = ranges.find((range) => intersects(range, reserved.range.start, reserved.range.last));
      if (clash !== undefined) {
        throw errno('EADDRINUSE', `allowed range ${hexRange(clash.start, clash.last)} meets the reserved ${hexRange(reserved.range.start, reserved.range.last)}`);
      }
    }
    this.#allowed = [...ranges];
  }

  /**
   * iopt_map_pages(): new areas for `slices`, laid end to end from `iova`
   * (FIXED_IOVA) or from an IOVA found for them, then filled into every
   * domain. Returns the IOVA. The checks, in iopt_alloc_area_pages()'s
   * order: too many areas (ENOMEM); a length of 0 or not a multiple of the
   * IOVA alignment (EINVAL); iopt_alloc_iova() or iopt_check_iova(); then
   * per area iopt_insert_area(): WRITE over read-only pages (EPERM), a first
   * byte not on the alignment (EINVAL). A fill failure removes the areas.
   */
  async mapPages(slices: readonly PagesSlice[], length: bigint, fixedIova: bigint | undefined, prot: number, hint: bigint): Promise<bigint> {
    // Each new area holds its pages; a failure drops them again (a fresh dma-buf import is detached).
    for (const slice of slices) slice.pages.get();
    try {
      if (this.#areas.length + slices.length > MAX_IOAS_AREAS) {
        throw errno('ENOMEM', `the IOAS holds ${this.#areas.length} areas: at most ${MAX_IOAS_AREAS}`);
      }
      const alignment = this.iovaAlignment;
      if (length === 0n || length % alignment !== 0n) {
        throw errno('EINVAL', `length ${hex(length)} is 0 or not a multiple of the IOVA alignment ${hex(alignment)}`);
      }
      const iova = fixedIova === undefined ? this.#allocIova(hint, length) : this.#checkIova(fixedIova, length);
      const areas: IoptArea[] = [];
      let at = iova;
      for (const slice of slices) {
        if ((prot & IOMMU_WRITE) !== 0 && !slice.pages.writable) {
          throw errno('EPERM', 'WRITEABLE requested over pages that were mapped read-only');
        }
        const area = new IoptArea(slice.pages, at, slice.length, slice.startByte, prot);
        if (area.pageOffset % alignment !== 0n) {
          throw errno('EINVAL', `the first byte's offset in its page (${hex(area.pageOffset)}) is not a multiple of the IOVA alignment ${hex(alignment)}`);
        }
        areas.push(area);
        at += slice.length;
      }
      this.#insert(areas);
      const filled: IoptArea[] = [];
      try {
        for (const area of areas) {
          await this.#fillArea(area);
          filled.push(area);
        }
      } catch (error) {
        for (const area of filled) await this.#unfillArea(area);
        this.#remove(areas);
        throw error;
      }
      return iova;
    } catch (error) {
      for (const slice of slices) await slice.pages.put();
      throw error;
    }
  }

  /**
   * iopt_unmap_iova_range(): removes every area in [start, last], which must
   * cover each whole: an area it only partly covers is ENOENT (native
   * iommufd never splits). As in the kernel, areas already removed by the
   * walk stay removed when a later one fails. Returns the bytes unmapped (0
   * for an empty range: the caller decides whether that is an error).
   */
  async unmapRange(start: bigint, last: bigint): Promise<bigint> {
    let unmapped = 0n;
    for (;;) {
      const area = this.#areas.find((candidate) => intersects({ start: candidate.iova, last: candidate.last }, start, last));
      if (area === undefined) return unmapped;
      if (area.iova < start || area.last > last) {
        throw errno(
          'ENOENT',
          `${hexRange(start, last)} only partly covers the area ${hexRange(area.iova, area.last)}: areas are unmapped whole` +
            (unmapped > 0n ? ` (${hex(unmapped)} bytes before it were unmapped)` : ''),
        );
      }
      await this.#unfillArea(area);
      this.#remove([area]);
      await area.pages.put();
      unmapped += area.length;
      if (area.last >= last) return unmapped;
      start = area.last + 1n;
    }
  }

  /** iopt_unmap_all(). */
  unmapAll(): Promise<bigint> {
    return this.unmapRange(0n, ULONG_MAX);
  }

  /**
   * iopt_get_pages() for IOMMU_IOAS_COPY: the pages behind [iova, iova +
   * length), which contiguous areas must cover with no hole (ENOENT);
   * slices of an area are fine.
   */
  getPages(iova: bigint, length: bigint): PagesSlice[] {
    if (length === 0n) throw errno('EINVAL', 'length is 0');
    const last = iova + length - 1n;
    if (last > ULONG_MAX) throw errno('EOVERFLOW', `IOVA ${hex(iova)} + length ${hex(length)} overflows`);
    const slices: PagesSlice[] = [];
    let at = iova;
    for (const area of this.#areas) {
      if (area.last < at) continue;
      if (area.iova > at) break;
      const end = area.last < last ? area.last : last;
      slices.push({ pages: area.pages, startByte: area.startByte + (at - area.iova), length: end - at + 1n });
      if (end === last) return slices;
      at = end + 1n;
    }
    throw errno('ENOENT', `${hexRange(iova, last)} is not covered by mapped areas without a hole (from ${hex(at)})`);
  }

  /**
   * iopt_table_add_domain(): the IOVA alignment the domain brings must suit
   * every area (EADDRINUSE); everything outside its aperture is reserved,
   * which an area or an allowed range there refuses (EADDRINUSE); then
   * every area is mapped into it (pinned first if it is the first domain).
   */
  async addDomain(domainId: number): Promise<void> {
    this.#checkAlignment(this.#alignmentWith(this.#domains.length + 1, this.#disableLargePages));
    this.reserve(domainId, APERTURE_RESERVED);
    const filled: IoptArea[] = [];
    try {
      for (const area of this.#areas) {
        if (this.#domains.length === 0) await area.pages.pin();
        try {
          await area.pages.mapArea(domainId, area);
        } catch (error) {
          if (this.#domains.length === 0) await area.pages.unpin();
          throw error;
        }
        filled.push(area);
      }
    } catch (error) {
      for (const area of filled) {
        await area.pages.unmapArea(domainId, area);
        if (this.#domains.length === 0) await area.pages.unpin();
      }
      this.removeReserved(domainId);
      throw error;
    }
    this.#domains.push(domainId);
  }

  /**
   * iopt_table_remove_domain(): the areas leave the domain; the last
   * domain's leaving unpins them. Teardown cannot stop half way: every area
   * is handled and the first failure (the platform not answering) is thrown
   * at the end.
   */
  async removeDomain(domainId: number): Promise<void> {
    const index = this.#domains.indexOf(domainId);
    if (index < 0) return;
    this.#domains.splice(index, 1);
    this.removeReserved(domainId);
    let failure: unknown;
    for (const area of this.#areas) {
      await area.pages.unmapArea(domainId, area).catch((error: unknown) => (failure ??= error));
      if (this.#domains.length === 0) await area.pages.unpin().catch((error: unknown) => (failure ??= error));
    }
    if (failure !== undefined) throw failure;
  }

  /**
   * iopt_reserve_iova() for each range (a device's reserved regions, a
   * domain's outside): none may meet an area or an allowed range
   * (EADDRINUSE); on a failure none is kept.
   */
  reserve(owner: unknown, ranges: readonly IovaRange[]): void {
    for (const range of ranges) {
      const area = this.#areas.find((candidate) => intersects(range, candidate.iova, candidate.last));
      if (area !== undefined) {
        throw errno('EADDRINUSE', `the reserved ${hexRange(range.start, range.last)} meets the mapped area ${hexRange(area.iova, area.last)}`);
      }
      const allowed = this.#allowed.find((candidate) => intersects(range, candidate.start, candidate.last));
      if (allowed !== undefined) {
        throw errno('EADDRINUSE', `the reserved ${hexRange(range.start, range.last)} meets the allowed ${hexRange(allowed.start, allowed.last)}`);
      }
    }
    for (const range of ranges) this.#reserved.push({ range, owner });
  }

  /** iopt_remove_reserved_iova(): every range `owner` reserved. */
  removeReserved(owner: unknown): void {
    for (let i = this.#reserved.length - 1; i >= 0; i--) {
      if (this.#reserved[i]!.owner === owner) this.#reserved.splice(i, 1);
    }
  }

  /**
   * iopt_disable_large_pages() (VFIO_SET_IOMMU(TYPE1)): refused while
   * domains hold mapped areas (EINVAL); the alignment becomes PAGE_SIZE,
   * which every area must suit (EADDRINUSE).
   */
  disableLargePages(): void {
    if (this.#disableLargePages) return;
    if (this.#domains.length > 0 && this.#areas.length > 0) {
      throw errno('EINVAL', 'large pages cannot be disabled once domains have areas mapped');
    }
    this.#checkAlignment(this.#alignmentWith(this.#domains.length, true));
    this.#disableLargePages = true;
  }

  /**
   * iopt_cut_iova(): splits the area holding each IOVA so the IOVA is the
   * last byte of the first part (iopt_area_split()), for the type1 v1
   * hole punch. An IOVA in no area, or at an area's first or last byte, cuts
   * nothing. A dma-buf area cannot be split (EOPNOTSUPP); a cut off the
   * alignment is EINVAL.
   */
  async cutIova(iovas: readonly bigint[]): Promise<void> {
    for (const iova of iovas) {
      const index = this.#areas.findIndex((candidate) => candidate.iova <= iova && iova <= candidate.last);
      if (index < 0) continue;
      const area = this.#areas[index]!;
      if (iova === area.iova || iova === area.last) continue;
      if (area.pages.type === 'dmabuf') throw errno('EOPNOTSUPP', `the area ${hexRange(area.iova, area.last)} maps a dma-buf: it cannot be split`);
      const newStart = iova + 1n;
      const alignment = this.iovaAlignment;
      const offset = newStart - area.iova;
      if (newStart % alignment !== 0n || (area.startByte + offset) % alignment !== 0n) {
        throw errno('EINVAL', `cutting the area ${hexRange(area.iova, area.last)} at ${hex(newStart)} is off the IOVA alignment ${hex(alignment)}`);
      }
      const lhs = new IoptArea(area.pages, area.iova, offset, area.startByte, area.prot);
      const rhs = new IoptArea(area.pages, newStart, area.length - offset, area.startByte + offset, area.prot);
      // Two areas where there was one: one more reference to the pages, and one more pin if filled.
      area.pages.get();
      if (this.#domains.length > 0) await area.pages.pin();
      this.#areas.splice(index, 1, lhs, rhs);
    }
  }

  /* ---- internals ---- */

  /** Every platform domain's smallest page is IOMMU_PAGE_SIZE (iommufd refuses one above PAGE_SIZE: it is equal here). */
  #alignmentWith(domains: number, disableLargePages: boolean): bigint {
    if (domains > 0) return IOMMU_PAGE_SIZE;
    return disableLargePages ? PAGE_SIZE : 1n;
  }

  /** iopt_check_iova_alignment(): every area's IOVA, length and page offset on `alignment`, else EADDRINUSE. */
  #checkAlignment(alignment: bigint): void {
    for (const area of this.#areas) {
      if (area.iova % alignment !== 0n || area.length % alignment !== 0n || area.pageOffset % alignment !== 0n) {
        throw errno('EADDRINUSE', `the area ${hexRange(area.iova, area.last)} is not aligned to ${hex(alignment)}`);
      }
    }
  }

  /**
   * iopt_check_iova() for a FIXED_IOVA map: on the alignment (EINVAL), no
   * overflow (EOVERFLOW), no reserved range (EINVAL), no area (EEXIST).
   * The allowed list does not apply to fixed IOVAs.
   */
  #checkIova(iova: bigint, length: bigint): bigint {
    const alignment = this.iovaAlignment;
    if (iova % alignment !== 0n) throw errno('EINVAL', `IOVA ${hex(iova)} is not a multiple of the IOVA alignment ${hex(alignment)}`);
    const last = iova + length - 1n;
    if (last > ULONG_MAX) throw errno('EOVERFLOW', `IOVA ${hex(iova)} + length ${hex(length)} overflows`);
    const reserved = this.#reserved.find((r) => intersects(r.range, iova, last));
    if (reserved !== undefined) {
      throw errno('EINVAL', `${hexRange(iova, last)} meets the reserved ${hexRange(reserved.range.start, reserved.range.last)}`);
    }
    const area = this.#areas.find((candidate) => intersects({ start: candidate.iova, last: candidate.last }, iova, last));
    if (area !== undefined) throw errno('EEXIST', `${hexRange(iova, last)} overlaps the mapped area ${hexRange(area.iova, area.last)}`);
    return iova;
  }

  /**
   * iopt_alloc_iova(): the first hole, in the allowed spans (the whole
   * space if none) within [PAGE_SIZE, ULONG_MAX - PAGE_SIZE], of the
   * reserved ranges and the areas, that holds `length` bytes aligned as the
   * hint's low bits and the length suggest (at most HPAGE_SIZE), with the
   * hint's offset in its page. IOVA 0 is never handed out. ENOSPC when no
   * hole fits.
   */
  #allocIova(hint: bigint, length: bigint): bigint {
    if (length === 0n || length >= ULONG_MAX / 2n) throw errno('EOVERFLOW', `length ${hex(length)} is too large to place`);
    const pageOffset = hint % PAGE_SIZE;
    let alignment = hint === 0n ? roundupPowOfTwo(length) : minBig(roundupPowOfTwo(length), lowestBit(hint));
    alignment = minBig(alignment, HPAGE_SIZE);
    if (alignment < this.iovaAlignment) {
      throw errno('EINVAL', `an IOVA aligned to ${hex(alignment)} (from the address ${hex(hint)}) is below the IOVA alignment ${hex(this.iovaAlignment)}`);
    }
    const from = PAGE_SIZE;
    const to = ULONG_MAX - PAGE_SIZE;
    const allowedSpans = this.#allowed.length === 0 ? [{ start: from, last: to }] : usedSpans(this.#allowed, from, to);
    const used = [...this.#reserved.map((r) => r.range), ...this.#areas.map((area) => ({ start: area.iova, last: area.last }))];
    for (const allowed of allowedSpans) {
      const start = fitIn(allowed.start, allowed.last, length, alignment, pageOffset);
      if (start === undefined) continue;
      for (const hole of spans(used, start, allowed.last)) {
        if (!hole.hole) continue;
        const fit = fitIn(hole.start, hole.last, length, alignment, pageOffset);
        if (fit !== undefined) return fit;
      }
    }
    throw errno('ENOSPC', `no free IOVA range holds ${hex(length)} bytes aligned to ${hex(alignment)}`);
  }

  /** Into the IOVA-ordered list (the areas are consecutive and clear of every other). */
  #insert(areas: readonly IoptArea[]): void {
    let low = 0;
    let high = this.#areas.length;
    while (low < high) {
      const middle = (low + high) >>> 1;
      if (this.#areas[middle]!.iova < areas[0]!.iova) low = middle + 1;
      else high = middle;
    }
    this.#areas.splice(low, 0, ...areas);
  }

  #remove(areas: readonly IoptArea[]): void {
    this.#areas = this.#areas.filter((area) => !areas.includes(area));
  }

  /** A new area enters the domains: pinned and mapped into each (iopt_area_fill_domains()); undone whole on failure. */
  async #fillArea(area: IoptArea): Promise<void> {
    if (this.#domains.length === 0) return;
    await area.pages.pin();
    const mapped: number[] = [];
    try {
      for (const domainId of this.#domains) {
        await area.pages.mapArea(domainId, area);
        mapped.push(domainId);
      }
    } catch (error) {
      for (const domainId of mapped) await area.pages.unmapArea(domainId, area);
      await area.pages.unpin();
      throw error;
    }
  }

  /** iopt_area_unfill_domains(): out of every domain, unpinned. */
  async #unfillArea(area: IoptArea): Promise<void> {
    if (this.#domains.length === 0) return;
    for (const domainId of this.#domains) await area.pages.unmapArea(domainId, area);
    await area.pages.unpin();
  }
}

function minBig(a: bigint, b: bigint): bigint {
  return a < b ? a : b;
}

/**
 * __alloc_iova_check_range(): `start` rounded up to `alignment`, with the
 * page offset or'ed in, if [that, last] holds `length` bytes.
 */
function fitIn(start: bigint, last: bigint, length: bigint, alignment: bigint, pageOffset: bigint): bigint | undefined {
  const rounded = start + alignment - 1n;
  if (rounded > ULONG_MAX) return undefined;
  const aligned = (rounded & ~(alignment - 1n)) | pageOffset;
  if (aligned >= last || last - aligned < length - 1n) return undefined;
  return aligned;
}
