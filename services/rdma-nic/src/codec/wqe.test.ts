import { expect } from 'chai';
import { WrOpcode } from '../verbs/enums';
import { WQE_BYTES } from '@p2p/verbs';
import { decodeWqes } from './wqe';

/** One WQE laid out by hand, as a client writes it. */
function wqe(fields: { wrId: bigint; opcode: number; numSge: number; flags?: number; imm?: number; raddr?: bigint; rkey?: number; lkey?: number; addr?: bigint; length?: number; compareAdd?: bigint; swap?: bigint }): Buffer {
  const b = Buffer.alloc(WQE_BYTES);
  b.writeBigUInt64LE(fields.wrId, 0);
  b.writeUInt8(fields.opcode, 8);
  b.writeUInt8(fields.numSge, 9);
  b.writeUInt16LE(fields.flags ?? 0, 10);
  b.writeUInt32LE(fields.imm ?? 0, 12);
  b.writeBigUInt64LE(fields.raddr ?? 0n, 16);
  b.writeUInt32LE(fields.rkey ?? 0, 24);
  b.writeUInt32LE(fields.lkey ?? 0, 28);
  b.writeBigUInt64LE(fields.addr ?? 0n, 32);
  b.writeUInt32LE(fields.length ?? 0, 40);
  b.writeBigUInt64LE(fields.compareAdd ?? 0n, 48);
  b.writeBigUInt64LE(fields.swap ?? 0n, 56);
  return b;
}

describe('packed WQE decoding', () => {
  it('reads every field of each 64-byte WQE, little-endian, at its offset', () => {
    const packed = Buffer.concat([
      wqe({ wrId: 0xfedcba9876543210n, opcode: WrOpcode.RDMA_WRITE_WITH_IMM, numSge: 1, flags: 2, imm: 0xdeadbeef, raddr: 0x20010n, rkey: 0x1234, lkey: 0x5678, addr: 0x10020n, length: 300 }),
      wqe({ wrId: 2n, opcode: WrOpcode.ATOMIC_CMP_AND_SWP, numSge: 1, raddr: 8n, rkey: 1, lkey: 2, addr: 16n, length: 8, compareAdd: 0xffff_ffff_ffff_fffen, swap: 5n }),
      wqe({ wrId: 3n, opcode: WrOpcode.SEND, numSge: 0 }),
    ]);
    const { wrs, error } = decodeWqes(packed);
    expect(error).to.equal(undefined);
    expect(wrs).to.deep.equal([
      { wrId: 0xfedcba9876543210n, opcode: WrOpcode.RDMA_WRITE_WITH_IMM, sgList: [{ addr: 0x10020, length: 300, lkey: 0x5678 }], sendFlags: 2, immData: 0xdeadbeef, remoteAddr: 0x20010, rkey: 0x1234, compareAdd: 0n, swap: 0n },
      { wrId: 2n, opcode: WrOpcode.ATOMIC_CMP_AND_SWP, sgList: [{ addr: 16, length: 8, lkey: 2 }], sendFlags: 0, immData: 0, remoteAddr: 8, rkey: 1, compareAdd: 0xffff_ffff_ffff_fffen, swap: 5n },
      { wrId: 3n, opcode: WrOpcode.SEND, sgList: [], sendFlags: 0, immData: 0, remoteAddr: 0, rkey: 0, compareAdd: 0n, swap: 0n },
    ]);
  });

  it('reads WQEs that sit at an offset inside a larger buffer', () => {
    const backing = Buffer.concat([Buffer.alloc(8, 0xee), wqe({ wrId: 9n, opcode: WrOpcode.SEND, numSge: 0 })]);
    expect(decodeWqes(backing.subarray(8)).wrs[0]).to.include({ wrId: 9n, opcode: WrOpcode.SEND });
  });

  it('stops at the first WQE it cannot read, keeping the ones before as posted candidates', () => {
    const tooManySges = decodeWqes(Buffer.concat([wqe({ wrId: 1n, opcode: WrOpcode.SEND, numSge: 0 }), wqe({ wrId: 2n, opcode: WrOpcode.SEND, numSge: 2 })]));
    expect(tooManySges.wrs).to.have.length(1);
    expect(tooManySges.error?.errno).to.equal('EINVAL');

    const farAddress = decodeWqes(wqe({ wrId: 1n, opcode: WrOpcode.RDMA_READ, numSge: 1, addr: 1n << 60n, length: 4 }));
    expect(farAddress.wrs).to.deep.equal([]);
    expect(farAddress.error?.errno).to.equal('EINVAL');
  });

  it('refuses a length that is not whole WQEs, decoding none', () => {
    const { wrs, error } = decodeWqes(Buffer.alloc(WQE_BYTES + 1));
    expect(wrs).to.deep.equal([]);
    expect(error?.errno).to.equal('EINVAL');
    expect(decodeWqes(Buffer.alloc(0))).to.deep.equal({ wrs: [] });
  });
});
