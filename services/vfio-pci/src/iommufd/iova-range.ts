import { U64_MAX } from '../uapi/u64';

/** ULONG_MAX on the modelled 64-bit kernel. */
export const ULONG_MAX = U64_MAX;

/** An inclusive IOVA range [start, last], as iommufd's interval trees and struct iommu_iova_range hold them. */
export interface IovaRange {
  readonly start: bigint;
  readonly last: bigint;
}

export function intersects(range: IovaRange, start: bigint, last: bigint): boolean {
  return range.start <= last && start <= range.last;
}

const byStart = (a: IovaRange, b: IovaRange): number => (a.start < b.start ? -1 : a.start > b.start ? 1 : 0);

/**
 * interval_tree_for_each_span() over [from, to]: the spans `used` covers
 * (overlapping ranges merged) and the holes between them, ascending.
 */
export function spans(used: Iterable<IovaRange>, from: bigint, to: bigint): Array<IovaRange & { readonly hole: boolean }> {
  const sorted = [...used].filter((range) => intersects(range, from, to)).sort(byStart);
  const out: Array<IovaRange & { hole: boolean }> = [];
  let cursor = from;
  for (const range of sorted) {
    const start = range.start > cursor ? range.start : cursor;
    if (start > cursor) out.push({ start: cursor, last: start - 1n, hole: true });
    const last = range.last < to ? range.last : to;
    if (last < start) continue;
    const previous = out.at(-1);
    if (previous !== undefined && !previous.hole && previous.last + 1n === start) out[out.length - 1] = { start: previous.start, last, hole: false };
    else out.push({ start, last, hole: false });
    if (last === to) return out;
    cursor = last + 1n;
  }
  out.push({ start: cursor, last: to, hole: true });
  return out;
}

/** The spans `used` covers in [from, to], merged, ascending. */
export function usedSpans(used: Iterable<IovaRange>, from: bigint, to: bigint): IovaRange[] {
  return spans(used, from, to)
    .filter((span) => !span.hole)
    .map(({ start, last }) => ({ start, last }));
}

/** roundup_pow_of_two() on u64. */
export function roundupPowOfTwo(value: bigint): bigint {
  let power = 1n;
  while (power < value) power <<= 1n;
  return power;
}

/** 1 << __ffs64(value): the lowest set bit (value > 0). */
export function lowestBit(value: bigint): bigint {
  return value & -value;
}

export function hexRange(start: bigint, last: bigint): string {
  return `[0x${start.toString(16)}, 0x${last.toString(16)}]`;
}
