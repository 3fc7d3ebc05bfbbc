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

/** Writes one CQE at `at` of `view`: the 32 bytes above (the first 32 of a user-queue ring CQE too). */
export function encodeCqe(view: DataView, at: number, wc: PackedCompletion): void {
  view.setBigUint64(at, wc.wrId, true);
  view.setUint8(at + 8, wc.status);
  view.setUint8(at + 9, wc.opcode);
  view.setUint8(at + 10, wc.withImm ? IBV_WC_WITH_IMM : 0);
  view.setUint32(at + 12, wc.byteLen >>> 0, true);
  view.setUint32(at + 16, wc.immData >>> 0, true);
  view.setUint32(at + 20, wc.qpNum >>> 0, true);
  view.setUint32(at + 24, wc.srcQp >>> 0, true);
  view.setUint32(at + 28, wc.vendorErr >>> 0, true);
}

/** Reads one CQE at `at` of `view`. */
export function decodeCqe(view: DataView, at: number): PackedCompletion {
  return {
    wrId: view.getBigUint64(at, true),
    status: view.getUint8(at + 8),
    opcode: view.getUint8(at + 9),
    withImm: (view.getUint8(at + 10) & IBV_WC_WITH_IMM) !== 0,
    byteLen: view.getUint32(at + 12, true),
    immData: view.getUint32(at + 16, true),
    qpNum: view.getUint32(at + 20, true),
    srcQp: view.getUint32(at + 24, true),
    vendorErr: view.getUint32(at + 28, true),
  };
}

export function encodeCqes(wcs: readonly PackedCompletion[]): Buffer {
  const out = Buffer.alloc(wcs.length * CQE_BYTES);
  const view = new DataView(out.buffer, out.byteOffset, out.byteLength);
  wcs.forEach((wc, i) => encodeCqe(view, i * CQE_BYTES, wc));
  return out;
}

export function decodeCqes(packed: Uint8Array): PackedCompletion[] {
  const view = new DataView(packed.buffer, packed.byteOffset, packed.byteLength);
  const out: PackedCompletion[] = [];
  for (let at = 0; at + CQE_BYTES <= packed.byteLength; at += CQE_BYTES) out.push(decodeCqe(view, at));
  return out;
}
