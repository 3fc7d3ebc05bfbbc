import { errno } from '@p2p/errno';

/** A 64-bit wire offset or length as a JS number; past 2^53 no BAR or segment can reach it. */
export function toNumber(value: bigint, field: string): number {
  if (value > BigInt(Number.MAX_SAFE_INTEGER)) throw errno('EOVERFLOW', `${field} ${value} is beyond any BAR or segment`);
  return Number(value);
}
