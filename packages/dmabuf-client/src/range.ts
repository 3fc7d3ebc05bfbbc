import { errno } from '@p2p/errno';

/**
 * Validates a byte range against an object of `size` bytes, as @p2p/shm does:
 * malformed numbers are EINVAL, a well-formed range past the end is ERANGE.
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
