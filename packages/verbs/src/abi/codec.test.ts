import { expect } from 'chai';
import { CQE_BYTES, decodeCqes, encodeCqes } from './cqe';
import { decodeWqes, encodeWqe, encodeWqes, WQE_BYTES } from './wqe';

describe('packed WQEs and CQEs', () => {
  it('a WQE unpacks to the send WR that was packed', () => {
    const packed = encodeWqes([
      { wrId: 2n ** 64n - 1n, opcode: 6, sge: { addr: 2 ** 40 + 8, length: 8, lkey: 0xfeed }, sendFlags: 3, remoteAddr: 2 ** 45, rkey: 0xbeef, compareAdd: 5n, swap: 2n ** 63n },
      { wrId: 7n, opcode: 1, sendFlags: 0, immData: 0xffff_ffff },
    ]);
    expect(packed.length).to.equal(2 * WQE_BYTES);
    expect(decodeWqes(packed)).to.deep.equal({
      wrs: [
        { wrId: 2n ** 64n - 1n, opcode: 6, sgList: [{ addr: 2 ** 40 + 8, length: 8, lkey: 0xfeed }], sendFlags: 3, immData: 0, remoteAddr: 2 ** 45, rkey: 0xbeef, compareAdd: 5n, swap: 2n ** 63n },
        { wrId: 7n, opcode: 1, sgList: [], sendFlags: 0, immData: 0xffff_ffff, remoteAddr: 0, rkey: 0, compareAdd: 0n, swap: 0n },
      ],
    });
  });

  it('names the first bad WQE: more than one SGE, an address past 2^53; a ragged length unpacks nothing', () => {
    const three = encodeWqes([{ wrId: 1n, opcode: 1, sendFlags: 0 }, { wrId: 2n, opcode: 1, sendFlags: 0 }, { wrId: 3n, opcode: 1, sendFlags: 0 }]);
    expect(decodeWqes(three.subarray(0, 2 * WQE_BYTES + 5))).to.deep.include({ wrs: [] });
    three.writeUInt8(2, WQE_BYTES + 9);
    const twoSges = decodeWqes(three);
    expect(twoSges.wrs).to.have.length(1);
    expect(twoSges.bad).to.deep.include({ index: 1 });
    const far = Buffer.alloc(WQE_BYTES);
    encodeWqe(far, 0, { wrId: 1n, opcode: 1, sendFlags: 0 });
    far.writeBigUInt64LE(2n ** 60n, 16);
    expect(decodeWqes(far).bad?.index).to.equal(0);
  });

  it('a CQE unpacks to the completion that was packed', () => {
    const wc = { wrId: 99n, status: 12, opcode: 129, byteLen: 1 << 20, immData: 0xdead_beef, withImm: true, qpNum: 0x101, srcQp: 0x202, vendorErr: 0 };
    const packed = encodeCqes([wc, { ...wc, withImm: false, wrId: 100n }]);
    expect(packed.length).to.equal(2 * CQE_BYTES);
    expect(packed.readUInt8(10)).to.equal(2);
    expect(decodeCqes(packed)).to.deep.equal([wc, { ...wc, withImm: false, wrId: 100n }]);
  });
});
