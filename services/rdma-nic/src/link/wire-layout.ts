/**
 * The binary layout of WireFrame.packets: what one NIC puts on the wire to
 * another, modelled on the IBA transport headers (IBA 9.2-9.3: BTH, RETH,
 * ImmDt, AtomicETH, AETH, AtomicAckETH) but with every field at a fixed
 * offset, so that encoding is a handful of DataView stores into a reused
 * buffer and decoding allocates nothing but the objects the domain is handed.
 * All fields are little-endian; u64 fields are two u32 halves (low first)
 * unless they are atomics operands, which are read as bigints.
 *
 * A frame is a frame header followed by packets back to back:
 *
 * Frame header, FRAME_HEADER_BYTES:
 *    0  u8   version (WIRE_VERSION)
 *    1  u8   flags: FRAME_RING_MAPPED = the sender maps the receiver's ring and
 *            `consumed` counts it (the credit that lets the receiver use it)
 *    2  u16  reserved, 0
 *    4  u32  number of packets that follow
 *    8  u32  consumed: bytes of the receiver's ring the sender is done with,
 *            cumulative modulo 2^32 (padding at the ring's end included)
 *   12  u32  frame sequence number, from 0, modulo 2^32: frames go on the
 *            stream or through the frame ring (frame-ring.ts), and the
 *            receiver runs them in this order whichever way each came
 *
 * Every packet starts with its kind (u8) and has a size fixed by the kind.
 *
 * REQUEST, REQUEST_BYTES: one RC request message (no MTU segmentation).
 *    0  u8   kind = PacketKind.REQUEST
 *    1  u8   op: WireOp (BTH OpCode, reduced to the operation)
 *    2  u8   flags: REQUEST_IMM = ImmDt present
 *    3  u8   payload placement (Placement)
 *    4  u32  destination QPN (BTH DestQP, 24 bits)
 *    8  u32  PSN (BTH PSN, 24 bits)
 *   12  u32  source QPN (RC has it in the QP context; the responder checks it)
 *   16  u32  link sequence number: the answer echoes it (see wire-link.ts)
 *   20  u32  R_Key (RETH / AtomicETH)
 *   24  u64  virtual address (RETH / AtomicETH)
 *   32  u32  DMA length (RETH)
 *   36  u32  immediate data (ImmDt)
 *   40  u64  compare (CMP_SWAP) or add (FETCH_ADD) data (AtomicETH)
 *   48  u64  swap data (AtomicETH)
 *   56  u32  payload locator: the ring position just past the payload
 *            (cumulative modulo 2^32), the index in inline_data, the
 *            grant id (Placement.GRANT), or the bulk stream position where
 *            the payload starts (Placement.STREAM, cumulative modulo 2^32)
 *   60  u32  payload bytes
 *   With Placement.GRANT (never an atomic) bytes 40-47 are the u64 offset
 *   in the granted buffer where the requester's memory of the message lies:
 *   a SEND's or WRITE's payload, or where a READ's answer is to land.
 *
 * RESPONSE, RESPONSE_BYTES: the responder's ACK or NAK.
 *    0  u8   kind = PacketKind.RESPONSE
 *    1  u8   flags: RESPONSE_ORIGINAL = AtomicAckETH present, RESPONSE_RNR_TIMER
 *    2  u8   RNR timer code (AETH syndrome timer field, IBA table 45)
 *    3  u8   payload placement (Placement): RDMA READ response data
 *    4  u32  destination QPN: the requester's QP
 *    8  u32  PSN, echoed
 *   12  u32  link sequence number, echoed
 *   16  i32  status: WcStatus (0 = ACK, else the NAK's completion status) or RNR_NAK
 *   20  u32  payload bytes
 *   24  u64  original remote data (AtomicAckETH)
 *   32  u32  payload locator, as in REQUEST; with Placement.GRANT the READ
 *            data is already in the requester's granted memory
 *   36  u32  reserved, 0
 *
 * RNR_CLEARED, RNR_CLEARED_BYTES: the responder can take what it answered
 * RNR for: the requester's QP may retry before its RNR timer runs out.
 *    0  u8   kind = PacketKind.RNR_CLEARED
 *    1  u8[3] reserved, 0
 *    4  u32  the requester's QPN
 *
 * GRANT_OFFER, GRANT_OFFER_BYTES (requester -> responder): the dma-buf behind
 * an MR, passed by the registry (see grants.ts).
 *    0  u8   kind = PacketKind.GRANT_OFFER
 *    1  u8[3] reserved, 0
 *    4  u32  grant id, chosen by the requester
 *    8  u64  the registry's buffer id the fd must name
 *   16  u64  the buffer's size
 *   24  u32  index in inline_data of the fd token (UTF-8)
 *   28  u32  index in inline_data of the importing BDF (UTF-8)
 *
 * GRANT_STATE, GRANT_STATE_BYTES (responder -> requester).
 *    0  u8   kind = PacketKind.GRANT_STATE
 *    1  u8   GrantState: MAPPED (requests may name it) or GONE (refused, or a
 *            move_notify took it: requests must not name it again)
 *    2  u16  reserved, 0
 *    4  u32  grant id
 *
 * GRANT_DROP, GRANT_DROP_BYTES (requester -> responder): the MR is gone;
 * release the grant.
 *    0  u8   kind = PacketKind.GRANT_DROP
 *    1  u8[3] reserved, 0
 *    4  u32  grant id
 */

export const WIRE_VERSION = 3;

export const FRAME_HEADER_BYTES = 16;
export const FRAME_RING_MAPPED = 0x01;

export const PacketKind = {
  REQUEST: 1,
  RESPONSE: 2,
  RNR_CLEARED: 3,
  GRANT_OFFER: 4,
  GRANT_STATE: 5,
  GRANT_DROP: 6,
} as const;

/** Where a packet's payload is. */
export const Placement = {
  NONE: 0,
  /** In the sender's ring, which the receiver maps. */
  RING: 1,
  /** In WireFrame.inline_data. */
  INLINE: 2,
  /** In the requester's memory, which the responder maps through a grant. */
  GRANT: 3,
  /** Next on the link's bulk stream (bulk-stream.ts), at the locator's position. */
  STREAM: 4,
} as const;
export type Placement = (typeof Placement)[keyof typeof Placement];

export const REQUEST_BYTES = 64;
export const REQUEST_IMM = 0x01;

export const RESPONSE_BYTES = 40;
export const RESPONSE_ORIGINAL = 0x01;
export const RESPONSE_RNR_TIMER = 0x02;

export const RNR_CLEARED_BYTES = 8;
export const GRANT_OFFER_BYTES = 32;
export const GRANT_STATE_BYTES = 8;
export const GRANT_DROP_BYTES = 8;

export const GrantState = { MAPPED: 1, GONE: 2 } as const;
export type GrantState = (typeof GrantState)[keyof typeof GrantState];

/** Each packet kind's size, by kind (0: no such kind). */
export const PACKET_BYTES: readonly number[] = [0, REQUEST_BYTES, RESPONSE_BYTES, RNR_CLEARED_BYTES, GRANT_OFFER_BYTES, GRANT_STATE_BYTES, GRANT_DROP_BYTES];

/** Byte offsets of the fields above. */
export const FrameField = { VERSION: 0, FLAGS: 1, PACKETS: 4, CONSUMED: 8, SEQ: 12 } as const;

export const RequestField = {
  OP: 1,
  FLAGS: 2,
  PLACEMENT: 3,
  DQPN: 4,
  PSN: 8,
  SRC_QPN: 12,
  SEQ: 16,
  RKEY: 20,
  VADDR: 24,
  LENGTH: 32,
  IMM: 36,
  COMPARE_ADD: 40,
  SWAP: 48,
  LOCATOR: 56,
  PAYLOAD_BYTES: 60,
  /** With Placement.GRANT, in place of the atomic operands. */
  GRANT_OFFSET: 40,
} as const;

export const ResponseField = {
  FLAGS: 1,
  RNR_TIMER: 2,
  PLACEMENT: 3,
  DQPN: 4,
  PSN: 8,
  SEQ: 12,
  STATUS: 16,
  PAYLOAD_BYTES: 20,
  ORIGINAL: 24,
  LOCATOR: 32,
} as const;

export const RnrClearedField = { QPN: 4 } as const;
export const GrantOfferField = { ID: 4, BUFFER_ID: 8, SIZE: 16, TOKEN: 24, BDF: 28 } as const;
export const GrantStateField = { STATE: 1, ID: 4 } as const;
export const GrantDropField = { ID: 4 } as const;

const TWO_32 = 2 ** 32;

/** Stores a safe non-negative integer as a little-endian u64. */
export function setU64(view: DataView, offset: number, value: number): void {
  view.setUint32(offset, value >>> 0, true);
  view.setUint32(offset + 4, Math.floor(value / TWO_32), true);
}

/** Reads a little-endian u64 written by setU64 (exact below 2^53). */
export function getU64(view: DataView, offset: number): number {
  return view.getUint32(offset + 4, true) * TWO_32 + view.getUint32(offset, true);
}
