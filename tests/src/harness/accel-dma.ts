/**
 * Payloads for accel0's DMA engine in tests and the helper processes that
 * map memory for it (the registers themselves: @p2p/user-driver).
 */

/**
 * `length` bytes (at most 1 MiB) whose every dword is its offset mixed with
 * `seed` (1 to 2047): no dword of one (seed, offset) equals another's, and
 * none is 0, so a byte that landed names the transfer that wrote it.
 */
export function pattern(length: number, seed: number): Buffer {
  const bytes = Buffer.alloc(length);
  for (let i = 0; i < length; i += 4) bytes.writeUInt32LE(Math.imul(i + seed * 0x10_0001, 0x9e37_79b1) >>> 0, i);
  return bytes;
}
