import { expect } from 'chai';
import { IBV_SEND_SIGNALED } from '../verbs/send-flags';
import { AsyncEventType, QpState, WcOpcode, WcStatus, WrOpcode } from '../verbs/enums';
import { connectedPair, type Side } from '../testing/two-nics';
import type { SendWr } from '../qp/work-request';

function fill(side: Side, offset: number, bytes: number[]): void {
  side.mem.buffer.set(bytes, offset);
}

function at(side: Side, offset: number, length: number): number[] {
  return [...side.mem.buffer.subarray(offset, offset + length)];
}

function wr(side: Side, fields: Partial<SendWr> & Pick<SendWr, 'opcode'>, offset = 0, length = 4): SendWr {
  return { wrId: 1n, sgList: [{ addr: side.iova + offset, length, lkey: side.key }], sendFlags: IBV_SEND_SIGNALED, ...fields };
}

describe('RC data path', () => {
  it('RDMA_WRITE copies the gathered SGEs into the responder MR', () => {
    const { a, b } = connectedPair();
    fill(a, 0, [1, 2]);
    fill(a, 100, [3, 4, 5]);
    const post = a.nic.postSend(a.qp.qpNum, [
      {
        wrId: 7n,
        opcode: WrOpcode.RDMA_WRITE,
        sgList: [
          { addr: a.iova, length: 2, lkey: a.key },
          { addr: a.iova + 100, length: 3, lkey: a.key },
        ],
        sendFlags: IBV_SEND_SIGNALED,
        remoteAddr: b.iova + 10,
        rkey: b.key,
      },
    ]);
    expect(post).to.deep.equal({ posted: 1 });
    expect(at(b, 10, 5)).to.deep.equal([1, 2, 3, 4, 5]);
    const [wc] = a.poll();
    expect(wc).to.include({ wrId: 7n, status: WcStatus.SUCCESS, opcode: WcOpcode.RDMA_WRITE, qpNum: a.qp.qpNum });
    expect(b.poll()).to.deep.equal([]);
  });

  it('RDMA_READ copies responder memory into the local SGEs', () => {
    const { a, b } = connectedPair();
    fill(b, 50, [9, 8, 7, 6]);
    a.nic.postSend(a.qp.qpNum, [wr(a, { opcode: WrOpcode.RDMA_READ, remoteAddr: b.iova + 50, rkey: b.key }, 200)]);
    expect(at(a, 200, 4)).to.deep.equal([9, 8, 7, 6]);
    expect(a.poll()[0]).to.include({ status: WcStatus.SUCCESS, opcode: WcOpcode.RDMA_READ, byteLen: 4 });
  });

  it('SEND lands in the posted receive; SEND_WITH_IMM carries the immediate', () => {
    const { a, b } = connectedPair();
    b.nic.postRecv(b.qp.qpNum, [
      { wrId: 100n, sgList: [{ addr: b.iova, length: 16, lkey: b.key }] },
      { wrId: 101n, sgList: [{ addr: b.iova + 16, length: 16, lkey: b.key }] },
    ]);
    fill(a, 0, [1, 2, 3, 4]);
    a.nic.postSend(a.qp.qpNum, [wr(a, { opcode: WrOpcode.SEND }), wr(a, { wrId: 2n, opcode: WrOpcode.SEND_WITH_IMM, immData: 0xdeadbeef })]);
    expect(at(b, 0, 4)).to.deep.equal([1, 2, 3, 4]);
    expect(at(b, 16, 4)).to.deep.equal([1, 2, 3, 4]);
    const recvs = b.poll();
    expect(recvs.map((wc) => [wc.wrId, wc.opcode, wc.byteLen, wc.withImm, wc.immData, wc.srcQp])).to.deep.equal([
      [100n, WcOpcode.RECV, 4, false, 0, a.qp.qpNum],
      [101n, WcOpcode.RECV, 4, true, 0xdeadbeef, a.qp.qpNum],
    ]);
    expect(a.poll().map((wc) => [wc.wrId, wc.opcode])).to.deep.equal([
      [1n, WcOpcode.SEND],
      [2n, WcOpcode.SEND],
    ]);
  });

  it('RDMA_WRITE_WITH_IMM writes and consumes a receive with RECV_RDMA_WITH_IMM', () => {
    const { a, b } = connectedPair();
    b.nic.postRecv(b.qp.qpNum, [{ wrId: 5n, sgList: [] }]);
    fill(a, 0, [4, 3, 2, 1]);
    a.nic.postSend(a.qp.qpNum, [wr(a, { opcode: WrOpcode.RDMA_WRITE_WITH_IMM, immData: 42, remoteAddr: b.iova + 8, rkey: b.key })]);
    expect(at(b, 8, 4)).to.deep.equal([4, 3, 2, 1]);
    expect(b.poll()[0]).to.include({ wrId: 5n, status: WcStatus.SUCCESS, opcode: WcOpcode.RECV_RDMA_WITH_IMM, byteLen: 4, immData: 42, withImm: true });
  });

  it('atomics: FETCH_AND_ADD and CMP_AND_SWP return the original value', () => {
    const { a, b } = connectedPair();
    const word = new DataView(b.mem.buffer.buffer, 64, 8);
    word.setBigUint64(0, 10n, true);
    a.nic.postSend(a.qp.qpNum, [wr(a, { opcode: WrOpcode.ATOMIC_FETCH_AND_ADD, compareAdd: 5n, remoteAddr: b.iova + 64, rkey: b.key }, 0, 8)]);
    expect(word.getBigUint64(0, true)).to.equal(15n);
    expect(new DataView(a.mem.buffer.buffer, 0, 8).getBigUint64(0, true)).to.equal(10n);
    a.nic.postSend(a.qp.qpNum, [wr(a, { opcode: WrOpcode.ATOMIC_CMP_AND_SWP, compareAdd: 15n, swap: 99n, remoteAddr: b.iova + 64, rkey: b.key }, 8, 8)]);
    expect(word.getBigUint64(0, true)).to.equal(99n);
    a.nic.postSend(a.qp.qpNum, [wr(a, { opcode: WrOpcode.ATOMIC_CMP_AND_SWP, compareAdd: 1n, swap: 7n, remoteAddr: b.iova + 64, rkey: b.key }, 16, 8)]);
    expect(word.getBigUint64(0, true)).to.equal(99n);
    expect(new DataView(a.mem.buffer.buffer, 16, 8).getBigUint64(0, true)).to.equal(99n);
    expect(a.poll().map((wc) => [wc.status, wc.opcode, wc.byteLen])).to.deep.equal([
      [WcStatus.SUCCESS, WcOpcode.FETCH_ADD, 8],
      [WcStatus.SUCCESS, WcOpcode.COMP_SWAP, 8],
      [WcStatus.SUCCESS, WcOpcode.COMP_SWAP, 8],
    ]);
  });

  it('unsignaled WRs complete silently unless sq_sig_all; their slots free when a later completion is polled', () => {
    const { a, b } = connectedPair({ sqSigAll: false, maxSendWr: 2 });
    const write = (wrId: bigint, flags: number): SendWr => ({ ...wr(a, { opcode: WrOpcode.RDMA_WRITE, remoteAddr: b.iova, rkey: b.key }), wrId, sendFlags: flags });
    expect(a.nic.postSend(a.qp.qpNum, [write(1n, 0), write(2n, IBV_SEND_SIGNALED)])).to.deep.equal({ posted: 2 });
    const full = a.nic.postSend(a.qp.qpNum, [write(3n, 0)]);
    expect(full.posted).to.equal(0);
    expect(full.error?.errno).to.equal('ENOMEM');
    expect(a.poll().map((wc) => wc.wrId)).to.deep.equal([2n]);
    expect(a.nic.postSend(a.qp.qpNum, [write(3n, 0)])).to.deep.equal({ posted: 1 });
  });

  it('post_send before RTS is EINVAL with nothing posted; post_recv in RESET is EINVAL', () => {
    const { a } = connectedPair();
    a.qp.modify({ qpState: QpState.RESET }, 1);
    expect(a.nic.postSend(a.qp.qpNum, [wr(a, { opcode: WrOpcode.SEND })]).error?.errno).to.equal('EINVAL');
    expect(a.nic.postRecv(a.qp.qpNum, [{ wrId: 1n, sgList: [] }]).error?.errno).to.equal('EINVAL');
  });

  it('bad_wr: the WRs before a bad one stay posted and run', () => {
    const { a, b } = connectedPair();
    const good = wr(a, { opcode: WrOpcode.RDMA_WRITE, remoteAddr: b.iova, rkey: b.key });
    const tooManySges: SendWr = { ...good, wrId: 2n, sgList: Array.from({ length: 5 }, () => good.sgList[0]!) };
    const result = a.nic.postSend(a.qp.qpNum, [good, tooManySges, good]);
    expect(result.posted).to.equal(1);
    expect(result.error?.errno).to.equal('EINVAL');
    expect(a.poll()).to.have.length(1);
  });

  it('raises COMM_EST on the first packet a QP in RTR receives', () => {
    const { a, b } = connectedPair();
    b.qp.modify({ qpState: QpState.RESET }, 1);
    b.qp.modify({ qpState: QpState.INIT, portNum: 1, pkeyIndex: 0, qpAccessFlags: 2 | 1 }, 1 | 8 | 16 | 32);
    b.qp.modify({ qpState: QpState.RTR, dgid: a.nic.gid, destQpNum: a.qp.qpNum, pathMtu: 5 }, 1 | 128 | 256 | 1048576 | 4096 | 131072 | 32768);
    a.nic.postSend(a.qp.qpNum, [wr(a, { opcode: WrOpcode.RDMA_WRITE, remoteAddr: b.iova, rkey: b.key })]);
    a.nic.postSend(a.qp.qpNum, [wr(a, { opcode: WrOpcode.RDMA_WRITE, remoteAddr: b.iova, rkey: b.key })]);
    expect(b.events).to.deep.equal([{ type: AsyncEventType.COMM_EST, qpNum: b.qp.qpNum }]);
    expect(a.poll().map((wc) => wc.status)).to.deep.equal([WcStatus.SUCCESS, WcStatus.SUCCESS]);
  });
});
