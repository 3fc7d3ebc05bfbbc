import type { IommuMapping } from './iommu-mapping';

/**
 * One iommu_domain: the functions attached to it and its page table, kept
 * as mappings sorted by IOVA that never overlap, so their ends are sorted
 * too and a lookup is a binary search. Rules live in Iommu; this is the table.
 */
export class IommuDomain {
  /** Canonical BDFs of the attached functions. */
  readonly devices = new Set<string>();
  readonly #mappings: IommuMapping[] = [];
  #mappedBytes = 0;

  constructor(readonly id: number) {}

  get mappings(): readonly IommuMapping[] {
    return this.#mappings;
  }

  get mappedBytes(): number {
    return this.#mappedBytes;
  }

  /** The mapping holding `iova`, if any. */
  lookup(iova: number): IommuMapping | undefined {
    const mapping = this.#mappings[this.#firstEndingAfter(iova)];
    return mapping !== undefined && mapping.iova <= iova ? mapping : undefined;
  }

  /** The mappings that meet [start, end), in IOVA order. */
  overlapping(start: number, end: number): IommuMapping[] {
    const found: IommuMapping[] = [];
    for (let i = this.#firstEndingAfter(start); i < this.#mappings.length && this.#mappings[i]!.iova < end; i++) {
      found.push(this.#mappings[i]!);
    }
    return found;
  }

  /** Replaces `removed` (a run from overlapping()) by `added` (pieces within the same IOVAs). */
  replace(removed: readonly IommuMapping[], added: readonly IommuMapping[]): void {
    const at = this.#firstEndingAfter((removed[0] ?? added[0])?.iova ?? 0);
    this.#mappings.splice(at, removed.length, ...[...added].sort((a, b) => a.iova - b.iova));
    this.#mappedBytes += sum(added) - sum(removed);
  }

  /** Index of the first mapping whose end lies past `iova`. */
  #firstEndingAfter(iova: number): number {
    let low = 0;
    let high = this.#mappings.length;
    while (low < high) {
      const middle = (low + high) >>> 1;
      const mapping = this.#mappings[middle]!;
      if (mapping.iova + mapping.length <= iova) low = middle + 1;
      else high = middle;
    }
    return low;
  }
}

const sum = (mappings: readonly IommuMapping[]): number => mappings.reduce((total, m) => total + m.length, 0);
