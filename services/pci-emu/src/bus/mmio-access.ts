import { errno } from '@p2p/errno';

/** MMIO widths: readb/readw/readl/readq. */
export type MmioWidth = 1 | 2 | 4 | 8;

/** Largest bulk transfer; bigger ranges belong on the shared-memory fast path. */
export const MAX_BULK_LENGTH = 2 ** 30;

export function checkMmioWidth(width: number, io: boolean): asserts width is MmioWidth {
  if (width !== 1 && width !== 2 && width !== 4 && !(width === 8 && !io)) {
    throw errno('EINVAL', `access width ${width} is not ${io ? '1, 2 or 4 (port I/O)' : '1, 2, 4 or 8'} bytes`);
  }
}

/** Offset and length are safe integers and [offset, offset + length) lies inside a BAR of `size` bytes. */
export function checkRange(offset: number, length: number, size: number, what: string): void {
  if (!Number.isSafeInteger(offset) || !Number.isSafeInteger(length) || offset < 0 || length < 0) {
    throw errno('EINVAL', `${what}: offset ${offset} and length ${length} must be non-negative integers`);
  }
  if (offset + length > size) {
    throw errno('EINVAL', `${what}: range 0x${offset.toString(16)}+${length} is outside the ${size}-byte BAR`);
  }
}

export function checkAligned(offset: number, alignment: number, what: string): void {
  if (offset % alignment !== 0) {
    throw errno('EINVAL', `${what}: offset 0x${offset.toString(16)} is not aligned to ${alignment} bytes`);
  }
}

/** Little-endian bytes of `value`, which must fit the width (numbers or bigints, never negative). */
export function encodeValue(value: number | bigint, width: MmioWidth): Buffer {
  const fits =
    typeof value === 'bigint' ? value >= 0n : Number.isSafeInteger(value) && value >= 0;
  const big = fits ? BigInt(value) : -1n;
  if (big < 0n || big >= 1n << BigInt(8 * width)) {
    throw errno('EINVAL', `value ${String(value)} does not fit in ${width} byte(s)`);
  }
  const bytes = Buffer.alloc(8);
  bytes.writeBigUInt64LE(big);
  return bytes.subarray(0, width);
}

export function decodeValue(bytes: Buffer, width: MmioWidth): number | bigint {
  return width === 8 ? bytes.readBigUInt64LE(0) : bytes.readUIntLE(0, width);
}
