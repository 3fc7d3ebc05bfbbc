/**
 * Packed CQEs, the layout of WatchCompletionsResponse.packed_cqes: 32
 * bytes each, little-endian.
 *
 *   @0  wr_id u64     @8  status u8    @9  opcode u8   @10 wc_flags u8
 *   @12 byte_len u32  @16 imm_data u32 @20 qp_num u32  @24 src_qp u32
 *   @28 vendor_err u32
 */
export const CQE_BYTES = 32;

/** IBV_WC_WITH_IMM in wc_flags. */
export const IBV_WC_WITH_IMM = 1 << 1;

/** struct ibv_wc, the fields the model reports. */
export interface PackedCompletion {
  readonly wrId: bigint;
  readonly status: number;
  readonly opcode: number;
  readonly byteLen: number;
  readonly immData: number;
  readonly withImm: boolean;
  readonly qpNum: number;
  readonly srcQp: number;
  readonly vendorErr: number;
}

export function encodeCqes(wcs: readonly PackedCompletion[]): Buffer {
  const out = Buffer.alloc(wcs.length * CQE_BYTES);
  wcs.forEach((wc, i) => {
    const at = i * CQE_BYTES;
    out.writeBigUInt64LE(wc.wrId, at);
    out.writeUInt8(wc.status, at + 8);
    out.writeUInt8(wc.opcode, at + 9);
    out.writeUInt8(wc.withImm ? IBV_WC_WITH_IMM : 0, at + 10);
    out.writeUInt32LE(wc.byteLen >>> 0, at + 12);
    out.writeUInt32LE(wc.immData >>> 0, at + 16);
    out.writeUInt32LE(wc.qpNum >>> 0, at + 20);
    out.writeUInt32LE(wc.srcQp >>> 0, at + 24);
    out.writeUInt32LE(wc.vendorErr >>> 0, at + 28);
  });
  return out;
}

export function decodeCqes(packed: Uint8Array): PackedCompletion[] {
  const buf = Buffer.from(packed.buffer, packed.byteOffset, packed.byteLength);
  const out: PackedCompletion[] = [];
  for (let at = 0; at + CQE_BYTES <= buf.length; at += CQE_BYTES) {
    out.push({
      wrId: buf.readBigUInt64LE(at),
      status: buf.readUInt8(at + 8),
      opcode: buf.readUInt8(at + 9),
      withImm: (buf.readUInt8(at + 10) & IBV_WC_WITH_IMM) !== 0,
      byteLen: buf.readUInt32LE(at + 12),
      immData: buf.readUInt32LE(at + 16),
      qpNum: buf.readUInt32LE(at + 20),
      srcQp: buf.readUInt32LE(at + 24),
      vendorErr: buf.readUInt32LE(at + 28),
    });
  }
  return out;
}
