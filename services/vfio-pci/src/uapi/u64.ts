import { errno } from '@p2p/errno';

/** The largest u64. */
export const U64_MAX = (1n << 64n) - 1n;
export const U32_MAX = 0xffff_ffff;

/** PAGE_SIZE of the modelled kernel (x86-64). */
export const PAGE_SIZE = 4096n;

/** PAGE_ALIGNED(). */
export function isPageAligned(value: bigint): boolean {
  return value % PAGE_SIZE === 0n;
}

/** check_add_overflow() on u64: the sum, or undefined if it does not fit. */
export function checkAddOverflow(a: bigint, b: bigint): bigint | undefined {
  const sum = a + b;
  return sum > U64_MAX ? undefined : sum;
}

/** A u32 argument, as an ioctl field can carry it: EINVAL otherwise. */
export function checkU32(value: number, what: string): number {
  if (!Number.isInteger(value) || value < 0 || value > U32_MAX) {
    throw errno('EINVAL', `${what} ${value} is not a u32`);
  }
  return value;
}

/** A u64 argument: EINVAL otherwise. */
export function checkU64(value: bigint, what: string): bigint {
  if (value < 0n || value > U64_MAX) {
    throw errno('EINVAL', `${what} ${value} is not a u64`);
  }
  return value;
}

export function hex(value: bigint | number): string {
  return `0x${value.toString(16)}`;
}
