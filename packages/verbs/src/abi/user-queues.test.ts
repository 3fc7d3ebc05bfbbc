import { expect } from 'chai';
import {
  cqeOwner,
  cqRingBytes,
  decodeRecvWqe,
  decodeRingCqe,
  decodeSendWqe,
  DoorbellWord,
  encodeRecvWqe,
  encodeRingCqe,
  encodeSendWqe,
  qpRingLayout,
  rqStride,
  sqStride,
} from './user-queues';

describe('user queue layouts (abi/user-queues)', () => {
  it('sizes WQE slots as powers of two that hold the SGEs', () => {
    expect([1, 2, 3, 4, 30].map(sqStride)).to.deep.equal([64, 128, 128, 128, 1024]);
    expect([1, 2, 3, 30].map(rqStride)).to.deep.equal([32, 64, 64, 512]);
  });

  it('lays a QP buffer out as header, send queue, receive queue, with the granted (power of two) depths', () => {
    const layout = qpRingLayout({ maxSendWr: 100, maxRecvWr: 16, maxSendSge: 2, maxRecvSge: 1 });
    expect(layout).to.deep.equal({ sqAt: 64, sqEntries: 128, sqStride: 128, rqAt: 64 + 128 * 128, rqEntries: 16, rqStride: 32, bytes: 64 + 128 * 128 + 16 * 32 });
    expect(cqRingBytes(255)).to.equal(64 + 256 * 64);
  });

  it('round-trips send and receive WQEs with several SGEs and addresses above 2^32', () => {
    const view = new DataView(new ArrayBuffer(512));
    const send = { wrId: 0xfedcba9876543210n, opcode: 5, sendFlags: 3, immData: 0xdeadbeef, remoteAddr: 2 ** 40 + 8, rkey: 77, compareAdd: 5n, swap: 9n, sgList: [{ addr: 2 ** 33, length: 4096, lkey: 1 }, { addr: 12, length: 1, lkey: 2 }] };
    encodeSendWqe(view, 128, send);
    expect(decodeSendWqe(view, 128, 128)).to.deep.equal(send);
    expect(decodeSendWqe(view, 128, 64)).to.match(/num_sge 2 does not fit a 64-byte WQE/);
    const recv = { wrId: 1n, sgList: [{ addr: 4096, length: 8, lkey: 3 }] };
    encodeRecvWqe(view, 0, recv);
    expect(decodeRecvWqe(view, 0, 32)).to.deep.equal(recv);
  });

  it('marks CQEs new by pass: owner 1 on the first pass of the ring, 0 on the second', () => {
    expect([0, 3, 4, 7, 8].map((n) => cqeOwner(n, 4))).to.deep.equal([1, 1, 0, 0, 1]);
    const view = new DataView(new ArrayBuffer(64));
    const wc = { wrId: 9n, status: 5, opcode: 128, byteLen: 0, immData: 0, withImm: false, qpNum: 0x101, srcQp: 0, vendorErr: 0, wqeCounter: 41 };
    encodeRingCqe(view, 0, wc, 1);
    expect(decodeRingCqe(view, 0)).to.deep.equal(wc);
    expect(view.getUint8(63)).to.equal(1);
  });

  it('keeps doorbell words 4-byte aligned', () => {
    const memory = new Uint8Array(new ArrayBuffer(16));
    const word = new DoorbellWord(memory, 4);
    word.store(0xffff_fffe);
    expect(word.load()).to.equal(0xffff_fffe);
    expect(() => new DoorbellWord(memory, 2)).to.throw(RangeError);
  });
});
