import { errno } from '@p2p/errno';

/** `0x`-prefixed lower-case hex, zero-padded to `digits` (addresses, registers, ids). */
export function hex(value: number | bigint, digits = 0): string {
  return `0x${value.toString(16).padStart(digits, '0')}`;
}

/** A size as lspci prints it: 16K, 1M, 256M, 4G; bytes when not a power-of-two multiple. */
export function size(bytes: bigint | number): string {
  let value = BigInt(bytes);
  for (const unit of ['', 'K', 'M', 'G', 'T']) {
    if (value < 1024n || value % 1024n !== 0n) return `${value}${unit}`;
    value /= 1024n;
  }
  return `${value}P`;
}

/**
 * An unsigned integer as users type it: decimal, `0x` hex, or with a K/M/G
 * suffix for sizes. EINVAL for anything else, or beyond `max`.
 */
export function parseUnsigned(text: string, what: string, max: bigint = 2n ** 64n - 1n): bigint {
  const match = /^(0x[0-9a-f]+|\d+)([kmg]?)$/i.exec(text.trim().replace(/_/g, ''));
  if (match === null) throw errno('EINVAL', `${what} ${JSON.stringify(text)} is not a number (decimal, 0x hex, or with K/M/G)`);
  const scale = { '': 1n, k: 1024n, m: 1024n ** 2n, g: 1024n ** 3n }[match[2]!.toLowerCase() as '' | 'k' | 'm' | 'g'];
  const value = BigInt(match[1]!) * scale;
  if (value > max) throw errno('EINVAL', `${what} ${text} is above ${hex(max)}`);
  return value;
}

/** parseUnsigned for values that fit a JavaScript number (offsets in config space, widths, counts). */
export function parseSmall(text: string, what: string, max = 0xffff_ffff): number {
  return Number(parseUnsigned(text, what, BigInt(max)));
}

/** Turns a response into JSON a script can read: hex strings for 64-bit values, bytes as one hex string. */
export function toJson(value: unknown): string {
  // A Buffer reaches the replacer already turned into {type, data} by its toJSON: look at the holder's own value.
  return JSON.stringify(
    value,
    function replace(this: Record<string, unknown>, key: string, v: unknown) {
      const raw = this[key];
      return typeof raw === 'bigint' ? hex(raw) : Buffer.isBuffer(raw) ? raw.toString('hex') : v;
    },
    2,
  );
}
