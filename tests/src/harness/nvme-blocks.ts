/*
 * Self-identifying blocks for the NVMe fault tests: every 512-byte sector
 * of a block carries its LBA, a generation, its index in the block, filler
 * derived from the three, and a checksum of the rest, so a block read back
 * is recognisably one generation's whole block, never-written zeroes, or
 * torn (sectors of different writes, or bytes of none).
 */

const SECTOR = 512;
const CHECKSUM_AT = SECTOR - 4;

/** FNV-1a over `bytes`. */
function fnv1a(bytes: Buffer): number {
  let hash = 0x811c9dc5;
  for (const byte of bytes) hash = Math.imul(hash ^ byte, 0x01000193) >>> 0;
  return hash;
}

function stampSector(out: Buffer, at: number, lba: bigint, generation: number, sector: number): void {
  out.writeBigUInt64LE(lba, at);
  out.writeUInt32LE(generation, at + 8);
  out.writeUInt32LE(sector, at + 12);
  let seed = (Number(lba & 0xffff_ffffn) ^ Math.imul(generation, 0x9e3779b1) ^ Math.imul(sector + 1, 0x85ebca6b)) >>> 0;
  for (let i = 16; i < CHECKSUM_AT; i += 4) {
    seed = (Math.imul(seed, 1664525) + 1013904223) >>> 0;
    out.writeUInt32LE(seed, at + i);
  }
  out.writeUInt32LE(fnv1a(out.subarray(at, at + CHECKSUM_AT)), at + CHECKSUM_AT);
}

/** Writes block `lba` of generation `generation` (`blockSize` bytes) into `out` at `offset`. */
export function stampBlock(out: Buffer, offset: number, lba: bigint, generation: number, blockSize: number): void {
  for (let sector = 0; sector < blockSize / SECTOR; sector++) stampSector(out, offset + sector * SECTOR, lba, generation, sector);
}

/** Block `lba` of generation `generation`, as a new buffer. */
export function stampedBlock(lba: bigint, generation: number, blockSize: number): Buffer {
  const out = Buffer.alloc(blockSize);
  stampBlock(out, 0, lba, generation, blockSize);
  return out;
}

/** What a block read back is: never written (zeroes), one generation's whole block, or torn. */
export type BlockContent = { readonly kind: 'zero' } | { readonly kind: 'stamped'; readonly generation: number } | { readonly kind: 'torn' };

/** Classifies `data` as block `lba`. */
export function classifyBlock(data: Buffer, lba: bigint): BlockContent {
  if (data.every((byte) => byte === 0)) return { kind: 'zero' };
  const generation = data.readUInt32LE(8);
  return data.equals(stampedBlock(lba, generation, data.length)) ? { kind: 'stamped', generation } : { kind: 'torn' };
}

/** A block's content as one word for assertion messages: 'zero', 'gen 3', 'torn'. */
export function describeBlock(content: BlockContent): string {
  return content.kind === 'stamped' ? `gen ${content.generation}` : content.kind;
}
