/**
 * Packed send WQEs, the layout of PostStreamRequest.wqes: 64 bytes each,
 * little-endian, one SGE, as a provider library writes WQEs into a send
 * queue buffer rather than building a message per work request.
 *
 *   @0  wr_id u64       @8  opcode u8 (WrOpcode)   @9  num_sge u8 (0 or 1)
 *   @10 send_flags u16  @12 imm_data u32           @16 remote_addr u64
 *   @24 rkey u32        @28 lkey u32               @32 addr u64
 *   @40 length u32      @44 reserved               @48 compare_add u64
 *   @56 swap u64
 */
export const WQE_BYTES = 64;

/** One send WR in the packed form: at most one SGE. */
export interface PackedSendWr {
  readonly wrId: bigint;
  readonly opcode: number;
  readonly sge?: { readonly addr: number; readonly length: number; readonly lkey: number };
  readonly sendFlags: number;
  readonly immData?: number;
  readonly remoteAddr?: number;
  readonly rkey?: number;
  readonly compareAdd?: bigint;
  readonly swap?: bigint;
}

/** Packs `wrs` into one buffer of WQE_BYTES each. */
export function encodeWqes(wrs: readonly PackedSendWr[]): Buffer {
  const out = Buffer.alloc(wrs.length * WQE_BYTES);
  wrs.forEach((wr, i) => encodeWqe(out, i * WQE_BYTES, wr));
  return out;
}

/** An address as a u64: a safe integer goes in as two u32 halves, anything else through BigInt (which throws as before for a non-integer). */
function writeU64(out: Buffer, value: number, at: number): void {
  if (Number.isSafeInteger(value) && value >= 0) {
    out.writeUInt32LE(value >>> 0, at);
    out.writeUInt32LE(Math.floor(value / 2 ** 32), at + 4);
  } else {
    out.writeBigUInt64LE(BigInt(value), at);
  }
}

/** Writes one WQE at `at` of `out`. */
export function encodeWqe(out: Buffer, at: number, wr: PackedSendWr): void {
  out.writeBigUInt64LE(wr.wrId, at);
  out.writeUInt8(wr.opcode, at + 8);
  out.writeUInt8(wr.sge === undefined ? 0 : 1, at + 9);
  out.writeUInt16LE(wr.sendFlags, at + 10);
  out.writeUInt32LE((wr.immData ?? 0) >>> 0, at + 12);
  writeU64(out, wr.remoteAddr ?? 0, at + 16);
  out.writeUInt32LE(wr.rkey ?? 0, at + 24);
  out.writeUInt32LE(wr.sge?.lkey ?? 0, at + 28);
  writeU64(out, wr.sge?.addr ?? 0, at + 32);
  out.writeUInt32LE(wr.sge?.length ?? 0, at + 40);
  out.writeBigUInt64LE(wr.compareAdd ?? 0n, at + 48);
  out.writeBigUInt64LE(wr.swap ?? 0n, at + 56);
}

const TWO_32 = 2 ** 32;
/** The largest high half of a u64 below 2^53. */
const MAX_SAFE_HIGH = 0x1f_ffff;

/** A u64 operand as a bigint, without making one for the usual 0 (every WQE but an atomic's). */
function readU64(buf: Buffer, at: number): bigint {
  return buf.readUInt32LE(at) === 0 && buf.readUInt32LE(at + 4) === 0 ? 0n : buf.readBigUInt64LE(at);
}

/** A send WR as the NIC reads it from a packed WQE. */
export interface UnpackedSendWr {
  readonly wrId: bigint;
  readonly opcode: number;
  readonly sgList: { readonly addr: number; readonly length: number; readonly lkey: number }[];
  readonly sendFlags: number;
  readonly immData: number;
  readonly remoteAddr: number;
  readonly rkey: number;
  readonly compareAdd: bigint;
  readonly swap: bigint;
}

/**
 * Unpacks WQEs, up to the first bad one: `bad` names its index and why
 * (num_sge over 1, an address past 2^53), the WQEs before it unpacked. A
 * length that is not whole WQEs is bad at index 0, nothing unpacked: such
 * a buffer is no list of WQEs at all.
 */
export function decodeWqes(packed: Uint8Array): { wrs: UnpackedSendWr[]; bad?: { index: number; reason: string } } {
  const buf = Buffer.from(packed.buffer, packed.byteOffset, packed.byteLength);
  const wrs: UnpackedSendWr[] = [];
  if (buf.length % WQE_BYTES !== 0) return { wrs, bad: { index: 0, reason: `${buf.length} bytes of packed WQEs is not a multiple of ${WQE_BYTES}` } };
  for (let i = 0; i < buf.length / WQE_BYTES; i++) {
    const at = i * WQE_BYTES;
    const numSge = buf.readUInt8(at + 9);
    if (numSge > 1) return { wrs, bad: { index: i, reason: `num_sge ${numSge}, but a packed WQE holds at most one SGE` } };
    // Addresses as numbers from their u32 halves: no bigint per field at message rate.
    const remoteHigh = buf.readUInt32LE(at + 20);
    const addrHigh = buf.readUInt32LE(at + 36);
    if (remoteHigh > MAX_SAFE_HIGH || addrHigh > MAX_SAFE_HIGH) return { wrs, bad: { index: i, reason: 'an address past 2^53' } };
    wrs.push({
      wrId: buf.readBigUInt64LE(at),
      opcode: buf.readUInt8(at + 8),
      sgList: numSge === 0 ? [] : [{ addr: addrHigh * TWO_32 + buf.readUInt32LE(at + 32), length: buf.readUInt32LE(at + 40), lkey: buf.readUInt32LE(at + 28) }],
      sendFlags: buf.readUInt16LE(at + 10),
      immData: buf.readUInt32LE(at + 12),
      remoteAddr: remoteHigh * TWO_32 + buf.readUInt32LE(at + 16),
      rkey: buf.readUInt32LE(at + 24),
      compareAdd: readU64(buf, at + 48),
      swap: readU64(buf, at + 56),
    });
  }
  return { wrs };
}
