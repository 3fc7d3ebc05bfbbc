import { errno } from '@p2p/errno';
import type { BarInfo } from './function-info';
import { checkRange } from './mmio-access';

const hex = (value: number): string => `0x${value.toString(16)}`;

/** The BAR offsets that are memory: all of a memory BAR, a register BAR's window; undefined for the rest. */
export function memoryRangeOf(bar: BarInfo): { readonly offset: number; readonly length: number } | undefined {
  return bar.kind === 'memory' ? { offset: 0, length: bar.size } : bar.window;
}

/** Whether BAR offsets [offset, offset + length), a non-empty range, all lie in the memory of `bar`. */
export function liesInMemory(bar: BarInfo, offset: number, length: number): boolean {
  const memory = memoryRangeOf(bar);
  return memory !== undefined && Number.isSafeInteger(offset) && Number.isSafeInteger(length) && length > 0 && offset >= memory.offset && offset + length <= memory.offset + memory.length;
}

/**
 * BAR offsets [offset, offset + length) of `bar` as an offset into the
 * BarMemory behind them. EINVAL unless they lie in memory: a memory BAR, or
 * a register BAR's window. Registers have no segments: nothing maps them,
 * no DMA reaches them, and only MMIO goes through their ops.
 */
export function memoryOffsetOf(bdf: string, bar: BarInfo, offset: number, length: number): number {
  const what = `${bdf} BAR ${bar.index}`;
  checkRange(offset, length, bar.size, what);
  const memory = memoryRangeOf(bar);
  if (memory === undefined) {
    throw errno('EINVAL', `${what} is ${bar.kind}, not memory: it has no segments, and no DMA reaches it`);
  }
  if (offset < memory.offset || offset + length > memory.offset + memory.length) {
    throw errno(
      'EINVAL',
      `${what}: [${hex(offset)}, +${hex(length)}) leaves its memory window [${hex(memory.offset)}, +${hex(memory.length)}): the rest of the BAR is registers`,
    );
  }
  return offset - memory.offset;
}
