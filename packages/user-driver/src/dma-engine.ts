/**
 * Driving accel0's DMA engine (registers in its BAR0, see
 * services/pci-emu/src/devices/dma-engine.ts) by register writes.
 */

/**
 * SRC_IOVA, DST_IOVA and LEN with the doorbell, as one 24-byte write at
 * DMA_SRC_IOVA: the qword at DMA_LEN is LEN | DOORBELL_START << 32, so the
 * transfer starts with the write.
 */
export function doorbellRegisters(src: bigint, dst: bigint, length: number): Buffer {
  const registers = Buffer.alloc(24);
  registers.writeBigUInt64LE(src, 0);
  registers.writeBigUInt64LE(dst, 8);
  registers.writeBigUInt64LE(BigInt(length) | (1n << 32n), 16);
  return registers;
}

/** A dword register value as a 4-byte little-endian write. */
export function u32(value: number): Buffer {
  const data = Buffer.alloc(4);
  data.writeUInt32LE(value);
  return data;
}

/** A qword register value (lo then hi dword) as an 8-byte little-endian write. */
export function u64(value: bigint): Buffer {
  const data = Buffer.alloc(8);
  data.writeBigUInt64LE(value);
  return data;
}
