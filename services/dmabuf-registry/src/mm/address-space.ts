import { MMAP_BASE, MMAP_MIN_ADDR, TASK_SIZE, pageAlign } from './layout';
import type { Vma } from './vma';

/** A piece of a range of the address space: mapped by (a slice of) `vma`, or a hole. */
export interface RangePiece<F> {
  readonly start: number;
  readonly end: number;
  readonly vma: Vma<F> | undefined;
}

/** What an unmap did: the VMAs taken out, and the pieces of them that stay (split or trimmed). */
export interface Unmapped<F> {
  readonly removed: Vma<F>[];
  readonly kept: Vma<F>[];
}

/**
 * The VMAs of one process (struct mm_struct's maple tree), sorted by start
 * and never overlapping. Pure bookkeeping: callers check arguments and take
 * or drop the file references the VMAs hold.
 *
 * Adjacent VMAs are never merged (no vma_merge()): each mmap stays its own
 * VMA until an unmap cuts it.
 */
export class AddressSpace<F> {
  readonly #vmas: Vma<F>[] = [];

  get count(): number {
    return this.#vmas.length;
  }

  /** Every VMA, lowest address first. */
  vmas(): readonly Vma<F>[] {
    return this.#vmas;
  }

  /**
   * get_unmapped_area() without MAP_FIXED: the hint rounded up to a page if
   * [hint, hint + length) is free and within [MMAP_MIN_ADDR, TASK_SIZE);
   * otherwise the top of the highest free range below MMAP_BASE that holds
   * `length` bytes (arch_get_unmapped_area_topdown()). Undefined when none
   * does (the kernel's ENOMEM).
   */
  place(length: number, hint: number): number | undefined {
    if (hint !== 0) {
      const start = pageAlign(hint);
      if (start >= MMAP_MIN_ADDR && start + length <= TASK_SIZE && this.isFree(start, start + length)) return start;
    }
    let ceiling = MMAP_BASE;
    for (let i = this.#vmas.length - 1; i >= 0; i--) {
      const vma = this.#vmas[i]!;
      if (vma.start >= ceiling) continue;
      if (vma.end < ceiling && ceiling - vma.end >= length) return ceiling - length;
      ceiling = vma.start;
    }
    return ceiling - MMAP_MIN_ADDR >= length ? ceiling - length : undefined;
  }

  /** True if no VMA has a byte in [start, end). */
  isFree(start: number, end: number): boolean {
    const vma = this.#vmas[this.#firstEndingAfter(start)];
    return vma === undefined || vma.start >= end;
  }

  /** How many VMAs there would be after unmap(start, end): a VMA with the range strictly inside it becomes two. */
  countAfterUnmap(start: number, end: number): number {
    let count = this.#vmas.length;
    for (const vma of this.#overlapping(start, end)) {
      count += (vma.start < start ? 1 : 0) + (vma.end > end ? 1 : 0) - 1;
    }
    return count;
  }

  /** Adds a VMA over a free range (the caller made sure it is free). */
  insert(vma: Vma<F>): void {
    if (!this.isFree(vma.start, vma.end)) throw new Error(`VMA [${vma.start}, ${vma.end}) overlaps a mapping`);
    this.#vmas.splice(this.#firstEndingAfter(vma.start), 0, vma);
  }

  /**
   * Takes [start, end) out of the address space (do_vmi_munmap()): VMAs
   * inside it go, a VMA across one of its ends is trimmed, one with the
   * range strictly inside is split in two. Holes are skipped.
   */
  unmap(start: number, end: number): Unmapped<F> {
    const first = this.#firstEndingAfter(start);
    const removed = this.#overlapping(start, end);
    const kept: Vma<F>[] = [];
    for (const vma of removed) {
      if (vma.start < start) kept.push(vma.slice(vma.start, start));
      if (vma.end > end) kept.push(vma.slice(end, vma.end));
    }
    this.#vmas.splice(first, removed.length, ...kept);
    return { removed, kept };
  }

  /**
   * [start, end) in address order, cut where VMAs begin and end: each piece
   * either a slice of the VMA that maps it or a hole. What a page walk
   * (follow_page) meets.
   */
  pieces(start: number, end: number): RangePiece<F>[] {
    const pieces: RangePiece<F>[] = [];
    let at = start;
    for (const vma of this.#overlapping(start, end)) {
      if (vma.start > at) pieces.push({ start: at, end: vma.start, vma: undefined });
      const from = Math.max(at, vma.start);
      const to = Math.min(end, vma.end);
      pieces.push({ start: from, end: to, vma: vma.slice(from, to) });
      at = to;
    }
    if (at < end) pieces.push({ start: at, end, vma: undefined });
    return pieces;
  }

  /** Empties the address space (exit_mmap()); returns what was mapped. */
  clear(): Vma<F>[] {
    return this.#vmas.splice(0);
  }

  /** The VMAs with a byte in [start, end), in order. */
  #overlapping(start: number, end: number): Vma<F>[] {
    const found: Vma<F>[] = [];
    for (let i = this.#firstEndingAfter(start); i < this.#vmas.length && this.#vmas[i]!.start < end; i++) found.push(this.#vmas[i]!);
    return found;
  }

  /** The index of the first VMA that ends after `address` (find_vma()), or the count if none does. */
  #firstEndingAfter(address: number): number {
    let low = 0;
    let high = this.#vmas.length;
    while (low < high) {
      const middle = (low + high) >>> 1;
      if (this.#vmas[middle]!.end <= address) low = middle + 1;
      else high = middle;
    }
    return low;
  }
}
