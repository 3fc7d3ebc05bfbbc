import { errno } from '@p2p/errno';

/** A 64-bit unsigned quantity as the API takes it: a safe-integer number or a bigint. */
export type U64 = number | bigint;

const U64_MAX = 2n ** 64n - 1n;

/** The wire form of a uint64 field; EINVAL for a negative, fractional or too large value. */
export function toU64(value: U64, what: string): bigint {
  if (typeof value === 'number' && !Number.isSafeInteger(value)) {
    throw errno('EINVAL', `${what} ${value} is not a safe integer`);
  }
  const wide = BigInt(value);
  if (wide < 0n || wide > U64_MAX) throw errno('EINVAL', `${what} ${value} is not a uint64`);
  return wide;
}

/** A uint64 from the wire as a JS number; EOVERFLOW past 2^53, where numbers stop being exact. */
export function toSafeNumber(value: bigint, what: string): number {
  if (value > BigInt(Number.MAX_SAFE_INTEGER)) {
    throw errno('EOVERFLOW', `${what} ${value} exceeds ${Number.MAX_SAFE_INTEGER}, the largest exact JS number`);
  }
  return Number(value);
}
