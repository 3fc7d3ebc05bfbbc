import { errno } from '@p2p/errno';

/**
 * Validates a byte range against an object of `size` bytes: malformed numbers
 * are EINVAL, a well-formed range that runs past the end is ERANGE.
 */
export function checkRange(offset: number, length: number, size: number, what: string): void {
  if (!Number.isSafeInteger(offset) || offset < 0) {
    throw errno('EINVAL', `${what}: offset ${offset} is not a non-negative safe integer`);
  }
  if (!Number.isSafeInteger(length) || length < 0) {
    throw errno('EINVAL', `${what}: length ${length} is not a non-negative safe integer`);
  }
  if (offset + length > size) {
    throw errno('ERANGE', `${what}: range [${offset}, ${offset + length}) runs past the end at ${size}`);
  }
}

/** Validates a size for a segment or region: EINVAL if malformed or below `min`. */
export function checkSize(size: number, min: number, what: string): void {
  if (!Number.isSafeInteger(size) || size < min) {
    throw errno('EINVAL', `${what}: size ${size} is not a safe integer >= ${min}`);
  }
}
