import { expect } from 'chai';
import { WcStatus } from '../verbs/enums';
import { RNR_NAK, WireOp, type WireRequest } from '../transport/fabric';
import { FrameBuilder } from './frame-builder';
import { readRequest, readResponse, requestPayload, responsePayload } from './packet-reader';
import {
  FRAME_HEADER_BYTES,
  FRAME_RING_MAPPED,
  FrameField,
  PacketKind,
  Placement,
  REQUEST_BYTES,
  RequestField,
  RESPONSE_BYTES,
  RNR_CLEARED_BYTES,
  RnrClearedField,
  WIRE_VERSION,
} from './wire-layout';

const REQUEST: WireRequest = {
  op: WireOp.FETCH_ADD,
  srcGid: '::ffff:10.0.0.1',
  srcQpn: 0x123456,
  psn: 0xabcdef,
  remoteAddr: 2 ** 53 - 1,
  rkey: 0xffffffff,
  length: 8,
  payload: [],
  withImm: false,
  immData: 0,
  compareAdd: 2n ** 64n - 1n,
  swap: 0n,
};

describe('wire packets', () => {
  it('encodes a frame of packets back to back under its header, and reads each field back', () => {
    const builder = new FrameBuilder();
    builder.request(77, 5, REQUEST, Placement.NONE, 0, 0);
    const inline = builder.addInline(Buffer.from('data'));
    builder.response(0x123456, 0xabcdef, 5, { status: RNR_NAK, rnrTimer: 14 }, Placement.INLINE, inline, 4);
    builder.rnrCleared(9);
    expect(builder.packets).to.equal(3);
    const { packets, inlineData } = builder.take(FRAME_RING_MAPPED, 0xfffffff0, 7);
    expect(packets.length).to.equal(FRAME_HEADER_BYTES + REQUEST_BYTES + RESPONSE_BYTES + RNR_CLEARED_BYTES);
    expect(inlineData).to.deep.equal([Buffer.from('data')]);
    const view = new DataView(packets.buffer, packets.byteOffset, packets.byteLength);
    expect([view.getUint8(FrameField.VERSION), view.getUint8(FrameField.FLAGS), view.getUint32(FrameField.PACKETS, true), view.getUint32(FrameField.CONSUMED, true), view.getUint32(FrameField.SEQ, true)]).to.deep.equal([
      WIRE_VERSION,
      FRAME_RING_MAPPED,
      3,
      0xfffffff0,
      7,
    ]);

    let at = FRAME_HEADER_BYTES;
    expect(view.getUint8(at)).to.equal(PacketKind.REQUEST);
    expect(view.getUint32(at + RequestField.DQPN, true)).to.equal(77);
    expect(view.getUint32(at + RequestField.SEQ, true)).to.equal(5);
    expect(requestPayload(view, at)).to.deep.equal({ placement: Placement.NONE, locator: 0, bytes: 0 });
    expect(readRequest(view, at, REQUEST.srcGid, [])).to.deep.equal(REQUEST);

    at += REQUEST_BYTES;
    expect(view.getUint8(at)).to.equal(PacketKind.RESPONSE);
    expect(responsePayload(view, at)).to.deep.equal({ placement: Placement.INLINE, locator: 0, bytes: 4 });
    expect(readResponse(view, at, inlineData)).to.deep.equal({ status: RNR_NAK, rnrTimer: 14, data: inlineData });

    at += RESPONSE_BYTES;
    expect(view.getUint8(at)).to.equal(PacketKind.RNR_CLEARED);
    expect(view.getUint32(at + RnrClearedField.QPN, true)).to.equal(9);

    // The builder starts over, and keeps working once it had to grow.
    for (let i = 0; i < 5000; i++) builder.response(i, i, i, { status: WcStatus.SUCCESS, original: BigInt(i) }, Placement.NONE, 0, 0);
    const next = builder.take(0, 0, 8);
    expect(next.packets.length).to.equal(FRAME_HEADER_BYTES + 5000 * RESPONSE_BYTES);
    const last = new DataView(next.packets.buffer, next.packets.byteOffset, next.packets.byteLength);
    expect(readResponse(last, FRAME_HEADER_BYTES + 4999 * RESPONSE_BYTES, undefined)).to.deep.equal({ status: WcStatus.SUCCESS, original: 4999n });
  });
});
