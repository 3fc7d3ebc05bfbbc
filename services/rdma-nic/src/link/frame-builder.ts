import { RNR_NAK, WireOp, type WireRequest, type WireResponse } from '../transport/fabric';
import {
  FRAME_HEADER_BYTES,
  FrameField,
  PacketKind,
  type Placement,
  RequestField,
  REQUEST_BYTES,
  REQUEST_IMM,
  ResponseField,
  RESPONSE_BYTES,
  RESPONSE_ORIGINAL,
  RESPONSE_RNR_TIMER,
  RnrClearedField,
  RNR_CLEARED_BYTES,
  GrantDropField,
  GRANT_DROP_BYTES,
  GrantOfferField,
  GRANT_OFFER_BYTES,
  GrantStateField,
  GRANT_STATE_BYTES,
  type GrantState,
  Placement as Placements,
  setU64,
  WIRE_VERSION,
} from './wire-layout';

const INITIAL_BYTES = 64 * 1024;
const U64_MASK = (1n << 64n) - 1n;

/** What take() hands to the stream: WireFrame's packets and inline_data. */
export interface BuiltFrame {
  readonly packets: Buffer;
  readonly inlineData: Buffer[];
}

/**
 * The packets of the next frame of one stream direction, encoded in place
 * (layout in wire-layout.ts) into a buffer that is reused frame after frame,
 * with the payloads that travel inline. Only take() allocates: one Buffer of
 * exactly the frame's size per frame, whatever the number of packets.
 */
export class FrameBuilder {
  #buffer = Buffer.allocUnsafe(INITIAL_BYTES);
  #view = new DataView(this.#buffer.buffer, this.#buffer.byteOffset, this.#buffer.byteLength);
  #used = FRAME_HEADER_BYTES;
  #packets = 0;
  #inline: Buffer[] = [];
  #inlineBytes = 0;

  get packets(): number {
    return this.#packets;
  }

  /** Bytes of packets so far, the frame header included. */
  get bytes(): number {
    return this.#used;
  }

  get inlineBytes(): number {
    return this.#inlineBytes;
  }

  /** Adds a payload to inline_data; its index is the packet's locator. */
  addInline(payload: Buffer): number {
    this.#inline.push(payload);
    this.#inlineBytes += payload.length;
    return this.#inline.length - 1;
  }

  request(dqpn: number, seq: number, request: WireRequest, placement: Placement, locator: number, payloadBytes: number): void {
    const at = this.#reserve(REQUEST_BYTES);
    const view = this.#view;
    view.setUint8(at, PacketKind.REQUEST);
    view.setUint8(at + RequestField.OP, request.op);
    view.setUint8(at + RequestField.FLAGS, request.withImm ? REQUEST_IMM : 0);
    view.setUint8(at + RequestField.PLACEMENT, placement);
    view.setUint32(at + RequestField.DQPN, dqpn, true);
    view.setUint32(at + RequestField.PSN, request.psn, true);
    view.setUint32(at + RequestField.SRC_QPN, request.srcQpn, true);
    view.setUint32(at + RequestField.SEQ, seq, true);
    view.setUint32(at + RequestField.RKEY, request.rkey, true);
    setU64(view, at + RequestField.VADDR, request.remoteAddr);
    view.setUint32(at + RequestField.LENGTH, request.length, true);
    view.setUint32(at + RequestField.IMM, request.immData, true);
    if (request.op === WireOp.CMP_SWAP || request.op === WireOp.FETCH_ADD) {
      view.setBigUint64(at + RequestField.COMPARE_ADD, request.compareAdd & U64_MASK, true);
      view.setBigUint64(at + RequestField.SWAP, request.swap & U64_MASK, true);
    } else if (placement === Placements.GRANT) {
      setU64(view, at + RequestField.GRANT_OFFSET, request.local!.offset);
      view.setUint32(at + RequestField.SWAP, 0, true);
      view.setUint32(at + RequestField.SWAP + 4, 0, true);
    } else {
      // No AtomicETH: skip the bigint work, which would dominate a small packet's cost.
      view.setUint32(at + RequestField.COMPARE_ADD, 0, true);
      view.setUint32(at + RequestField.COMPARE_ADD + 4, 0, true);
      view.setUint32(at + RequestField.SWAP, 0, true);
      view.setUint32(at + RequestField.SWAP + 4, 0, true);
    }
    view.setUint32(at + RequestField.LOCATOR, locator, true);
    view.setUint32(at + RequestField.PAYLOAD_BYTES, payloadBytes, true);
  }

  response(dqpn: number, psn: number, seq: number, response: WireResponse, placement: Placement, locator: number, payloadBytes: number): void {
    const at = this.#reserve(RESPONSE_BYTES);
    const view = this.#view;
    const original = response.original;
    const rnrTimer = response.status === RNR_NAK ? response.rnrTimer : undefined;
    view.setUint8(at, PacketKind.RESPONSE);
    view.setUint8(at + ResponseField.FLAGS, (original !== undefined ? RESPONSE_ORIGINAL : 0) | (rnrTimer !== undefined ? RESPONSE_RNR_TIMER : 0));
    view.setUint8(at + ResponseField.RNR_TIMER, (rnrTimer ?? 0) & 31);
    view.setUint8(at + ResponseField.PLACEMENT, placement);
    view.setUint32(at + ResponseField.DQPN, dqpn, true);
    view.setUint32(at + ResponseField.PSN, psn, true);
    view.setUint32(at + ResponseField.SEQ, seq, true);
    view.setInt32(at + ResponseField.STATUS, response.status, true);
    view.setUint32(at + ResponseField.PAYLOAD_BYTES, payloadBytes, true);
    if (original !== undefined) {
      view.setBigUint64(at + ResponseField.ORIGINAL, original & U64_MASK, true);
    } else {
      view.setUint32(at + ResponseField.ORIGINAL, 0, true);
      view.setUint32(at + ResponseField.ORIGINAL + 4, 0, true);
    }
    view.setUint32(at + ResponseField.LOCATOR, locator, true);
    view.setUint32(at + ResponseField.LOCATOR + 4, 0, true);
  }

  rnrCleared(qpn: number): void {
    const at = this.#reserve(RNR_CLEARED_BYTES);
    // The kind in byte 0 and the three reserved bytes zeroed, in one store.
    this.#view.setUint32(at, PacketKind.RNR_CLEARED, true);
    this.#view.setUint32(at + RnrClearedField.QPN, qpn, true);
  }

  /** Offers the dma-buf of grant `id` (its token and BDF travel in inline_data). */
  grantOffer(id: number, bufferId: bigint, size: number, token: string, bdf: string): void {
    const tokenIndex = this.addInline(Buffer.from(token, 'utf8'));
    const bdfIndex = this.addInline(Buffer.from(bdf, 'utf8'));
    const at = this.#reserve(GRANT_OFFER_BYTES);
    const view = this.#view;
    view.setUint32(at, PacketKind.GRANT_OFFER, true);
    view.setUint32(at + GrantOfferField.ID, id, true);
    view.setBigUint64(at + GrantOfferField.BUFFER_ID, bufferId & U64_MASK, true);
    setU64(view, at + GrantOfferField.SIZE, size);
    view.setUint32(at + GrantOfferField.TOKEN, tokenIndex, true);
    view.setUint32(at + GrantOfferField.BDF, bdfIndex, true);
  }

  grantState(id: number, state: GrantState): void {
    const at = this.#reserve(GRANT_STATE_BYTES);
    this.#view.setUint32(at, PacketKind.GRANT_STATE | (state << 8), true);
    this.#view.setUint32(at + GrantStateField.ID, id, true);
  }

  grantDrop(id: number): void {
    const at = this.#reserve(GRANT_DROP_BYTES);
    this.#view.setUint32(at, PacketKind.GRANT_DROP, true);
    this.#view.setUint32(at + GrantDropField.ID, id, true);
  }

  /**
   * The frame so far, under a header with `flags`, `consumed` and the frame sequence number `seq`, and a
   * fresh start for the next one. A frame with no packets is just the
   * header: a credit update.
   */
  take(flags: number, consumed: number, seq: number): BuiltFrame {
    const view = this.#view;
    view.setUint8(FrameField.VERSION, WIRE_VERSION);
    view.setUint8(FrameField.FLAGS, flags);
    view.setUint16(FrameField.FLAGS + 1, 0, true);
    view.setUint32(FrameField.PACKETS, this.#packets, true);
    view.setUint32(FrameField.CONSUMED, consumed, true);
    view.setUint32(FrameField.SEQ, seq, true);
    const packets = Buffer.allocUnsafe(this.#used);
    this.#buffer.copy(packets, 0, 0, this.#used);
    const inlineData = this.#inline;
    this.#used = FRAME_HEADER_BYTES;
    this.#packets = 0;
    this.#inline = [];
    this.#inlineBytes = 0;
    return { packets, inlineData };
  }

  /** Room for one packet of `bytes`; the buffer doubles when full and keeps its size after. */
  #reserve(bytes: number): number {
    const at = this.#used;
    if (at + bytes > this.#buffer.length) {
      const grown = Buffer.allocUnsafe(Math.max(2 * this.#buffer.length, at + bytes));
      this.#buffer.copy(grown, 0, 0, at);
      this.#buffer = grown;
      this.#view = new DataView(grown.buffer, grown.byteOffset, grown.byteLength);
    }
    this.#used = at + bytes;
    this.#packets++;
    return at;
  }
}
