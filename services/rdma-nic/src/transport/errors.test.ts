import { expect } from 'chai';
import { IBV_ACCESS_LOCAL_WRITE, IBV_ACCESS_REMOTE_READ } from '../verbs/access-flags';
import { IBV_SEND_SIGNALED } from '../verbs/send-flags';
import { AsyncEventType, QpState, WcStatus, WrOpcode } from '../verbs/enums';
import { HeapMemory } from '../testing/heap-memory';
import { InMemoryFabric } from '../testing/in-memory-fabric';
import { connectedPair, connectedPairOn, settle, type Side } from '../testing/two-nics';
import type { SendWr } from '../qp/work-request';
import { REFETCH, WireOp, type WireReply, type WireRequest } from './fabric';

function write(a: Side, b: Side, fields: Partial<SendWr> = {}): SendWr {
  return {
    wrId: 1n,
    opcode: WrOpcode.RDMA_WRITE,
    sgList: [{ addr: a.iova, length: 4, lkey: a.key }],
    sendFlags: 0,
    remoteAddr: b.iova,
    rkey: b.key,
    ...fields,
  };
}

function statuses(side: Side): [bigint, number][] {
  return side.poll().map((wc) => [wc.wrId, wc.status]);
}

/** A fabric whose peer answers REFETCH to the first transmission of each PSN in `psns` (its grant of the requester's memory went). */
class RefetchingFabric extends InMemoryFabric {
  readonly sent: { psn: number; bytes: number[] }[] = [];

  constructor(
    readonly psns: Set<number>,
    readonly onRefetch: (psn: number) => void = () => undefined,
  ) {
    super();
  }

  override request(dgid: string, dqpn: number, request: WireRequest, timeoutMs: number, reply: WireReply): void {
    this.sent.push({ psn: request.psn, bytes: request.payload.flatMap((view) => [...view]) });
    if (this.psns.delete(request.psn)) {
      this.onRefetch(request.psn);
      reply({ status: REFETCH });
    }
    else super.request(dgid, dqpn, request, timeoutMs, reply);
  }
}

describe('RC error completions', () => {
  it('REFETCH: the message and every later one go again under their PSNs, their SGEs fetched anew, no retry spent; each completes once, in order', () => {
    // The memory behind PSN 0 changes while its grant is lost: the message sent again carries what the SGE holds then.
    let refetched = (): void => undefined;
    const fabric = new RefetchingFabric(new Set([0, 1]), () => refetched());
    const { a, b } = connectedPairOn(fabric, { retryCnt: 0 });
    refetched = () => void a.mem.buffer.fill(9, 0, 4);
    a.mem.buffer.fill(1, 0, 4);
    a.mem.buffer.fill(2, 4, 8);
    a.mem.buffer.fill(3, 8, 12);
    const wrs = [0, 1, 2].map((i) => write(a, b, { wrId: BigInt(i), sendFlags: IBV_SEND_SIGNALED, sgList: [{ addr: a.iova + 4 * i, length: 4, lkey: a.key }], remoteAddr: b.iova + 4 * i }));
    const first = fabric.sent.length;
    a.nic.postSend(a.qp.qpNum, wrs.slice(0, 1));
    expect(fabric.sent.slice(first).map(({ psn }) => psn)).to.deep.equal([0, 0]);
    expect(fabric.sent.slice(first).map(({ bytes }) => bytes)).to.deep.equal([
      [1, 1, 1, 1],
      [9, 9, 9, 9],
    ]);
    a.nic.postSend(a.qp.qpNum, wrs.slice(1));
    expect(fabric.sent.slice(first).map(({ psn }) => psn)).to.deep.equal([0, 0, 1, 1, 2]);
    expect(statuses(a)).to.deep.equal([
      [0n, WcStatus.SUCCESS],
      [1n, WcStatus.SUCCESS],
      [2n, WcStatus.SUCCESS],
    ]);
    expect([...b.mem.buffer.subarray(0, 12)]).to.deep.equal([9, 9, 9, 9, 2, 2, 2, 2, 3, 3, 3, 3]);
    expect(a.qp.refetches).to.equal(2);
    expect(a.qp.retries).to.equal(0);
    expect(a.qp.state).to.equal(QpState.RTS);
  });


  it('REM_ACCESS_ERR for a bad rkey, out-of-bounds or a missing access right; requester to ERR, responder QP_ACCESS_ERR', () => {
    const cases: ((a: Side, b: Side) => Partial<SendWr>)[] = [
      (_a, b) => ({ rkey: b.key + 1 }),
      (_a, b) => ({ remoteAddr: b.iova + b.mem.length - 2 }),
      (_a, b) => ({ remoteAddr: b.iova - 1 }),
      (_a, b) => ({ rkey: b.nic.regMr(b.pd, new HeapMemory(64), 0, IBV_ACCESS_LOCAL_WRITE).rkey, remoteAddr: 0 }),
      (_a, b) => ({ opcode: WrOpcode.RDMA_READ, rkey: b.nic.regMr(b.nic.allocPd().handle, new HeapMemory(64), 0, IBV_ACCESS_REMOTE_READ).rkey, remoteAddr: 0 }),
    ];
    for (const make of cases) {
      const { a, b } = connectedPair();
      b.mem.buffer.fill(0xee);
      a.mem.buffer.fill(1);
      a.nic.postSend(a.qp.qpNum, [write(a, b, { ...make(a, b), wrId: 1n }), write(a, b, { wrId: 2n })]);
      expect(statuses(a)).to.deep.equal([
        [1n, WcStatus.REM_ACCESS_ERR],
        [2n, WcStatus.WR_FLUSH_ERR],
      ]);
      expect(a.qp.state).to.equal(QpState.ERR);
      expect(b.qp.state).to.equal(QpState.ERR);
      expect(b.events).to.deep.equal([{ type: AsyncEventType.QP_ACCESS_ERR, qpNum: b.qp.qpNum }]);
      expect(a.events).to.deep.equal([]);
      expect(b.mem.buffer.every((byte) => byte === 0xee)).to.equal(true);
    }
  });

  it('REM_INV_REQ_ERR for an opcode the responder QP does not allow and for a misaligned atomic; responder QP_REQ_ERR', () => {
    const noWrite = connectedPair({ qpAccess: IBV_ACCESS_LOCAL_WRITE });
    noWrite.a.nic.postSend(noWrite.a.qp.qpNum, [write(noWrite.a, noWrite.b)]);
    expect(statuses(noWrite.a)).to.deep.equal([[1n, WcStatus.REM_INV_REQ_ERR]]);
    expect(noWrite.b.events).to.deep.equal([{ type: AsyncEventType.QP_REQ_ERR, qpNum: noWrite.b.qp.qpNum }]);

    const { a, b } = connectedPair();
    a.nic.postSend(a.qp.qpNum, [
      write(a, b, { opcode: WrOpcode.ATOMIC_FETCH_AND_ADD, sgList: [{ addr: a.iova, length: 8, lkey: a.key }], remoteAddr: b.iova + 4, compareAdd: 1n }),
    ]);
    expect(statuses(a)).to.deep.equal([[1n, WcStatus.REM_INV_REQ_ERR]]);
    expect(a.qp.state).to.equal(QpState.ERR);
    expect(b.qp.state).to.equal(QpState.ERR);
  });

  it('a SEND or WRITE whose payload is not the length it declares (a peer with a broken codec): REM_INV_REQ_ERR, responder QP_REQ_ERR, nothing written', () => {
    for (const op of [WireOp.SEND, WireOp.RDMA_WRITE]) {
      for (const payload of [[Buffer.alloc(8, 7)], [Buffer.alloc(4, 7), Buffer.alloc(12, 7)], []]) {
        const { a, b } = connectedPair();
        b.nic.postRecv(b.qp.qpNum, [{ wrId: 9n, sgList: [{ addr: b.iova, length: 64, lkey: b.key }] }]);
        b.mem.buffer.fill(0xee);
        const request: WireRequest = { op, srcGid: a.nic.gid, srcQpn: a.qp.qpNum, psn: 0, remoteAddr: b.iova, rkey: b.key, length: 10, payload, withImm: false, immData: 0, compareAdd: 0n, swap: 0n };
        expect(b.nic.receive(b.qp.qpNum, request)).to.deep.equal({ status: WcStatus.REM_INV_REQ_ERR });
        expect(b.qp.state).to.equal(QpState.ERR);
        expect(b.events).to.deep.equal([{ type: AsyncEventType.QP_REQ_ERR, qpNum: b.qp.qpNum }]);
        expect(statuses(b)).to.deep.equal([[9n, WcStatus.WR_FLUSH_ERR]]);
        expect(b.mem.buffer.every((byte) => byte === 0xee)).to.equal(true);
      }
    }
  });

  it('a packet whose operation the opcode table does not know (a corrupt frame): REM_INV_REQ_ERR, responder QP_REQ_ERR; its duplicate is acknowledged, not run', () => {
    const { a, b } = connectedPair();
    const request = (psn: number): WireRequest => ({ op: 9 as WireOp, srcGid: a.nic.gid, srcQpn: a.qp.qpNum, psn, remoteAddr: b.iova, rkey: b.key, length: 0, payload: [], withImm: false, immData: 0, compareAdd: 0n, swap: 0n });
    const first = connectedPair();
    // A duplicate PSN of an unknown operation: acknowledged, as any duplicate that needs no data.
    first.b.nic.receive(first.b.qp.qpNum, { ...request(0), op: WireOp.RDMA_WRITE, srcGid: first.a.nic.gid, srcQpn: first.a.qp.qpNum, rkey: first.b.key, remoteAddr: first.b.iova });
    expect(first.b.nic.receive(first.b.qp.qpNum, { ...request(0), srcGid: first.a.nic.gid, srcQpn: first.a.qp.qpNum })).to.deep.equal({ status: WcStatus.SUCCESS });
    expect(b.nic.receive(b.qp.qpNum, request(0))).to.deep.equal({ status: WcStatus.REM_INV_REQ_ERR });
    expect(b.qp.state).to.equal(QpState.ERR);
    expect(b.events).to.deep.equal([{ type: AsyncEventType.QP_REQ_ERR, qpNum: b.qp.qpNum }]);
  });

  it('a SEND too long for the receive: LOC_LEN_ERR at the responder, REM_INV_REQ_ERR at the requester', () => {
    const { a, b } = connectedPair();
    b.nic.postRecv(b.qp.qpNum, [{ wrId: 9n, sgList: [{ addr: b.iova, length: 2, lkey: b.key }] }]);
    a.nic.postSend(a.qp.qpNum, [write(a, b, { opcode: WrOpcode.SEND })]);
    expect(statuses(b)).to.deep.equal([[9n, WcStatus.LOC_LEN_ERR]]);
    expect(statuses(a)).to.deep.equal([[1n, WcStatus.REM_INV_REQ_ERR]]);
  });

  it('a receive with a bad lkey: LOC_PROT_ERR at the responder, REM_OP_ERR at the requester', () => {
    const { a, b } = connectedPair();
    b.nic.postRecv(b.qp.qpNum, [{ wrId: 9n, sgList: [{ addr: b.iova, length: 8, lkey: 12345 }] }]);
    a.nic.postSend(a.qp.qpNum, [write(a, b, { opcode: WrOpcode.SEND })]);
    expect(statuses(b)).to.deep.equal([[9n, WcStatus.LOC_PROT_ERR]]);
    expect(statuses(a)).to.deep.equal([[1n, WcStatus.REM_OP_ERR]]);
  });

  it('WRITE_WITH_IMM to a bad rkey completes the responder receive with LOC_ACCESS_ERR', () => {
    const { a, b } = connectedPair();
    b.nic.postRecv(b.qp.qpNum, [{ wrId: 9n, sgList: [] }, { wrId: 10n, sgList: [] }]);
    a.nic.postSend(a.qp.qpNum, [write(a, b, { opcode: WrOpcode.RDMA_WRITE_WITH_IMM, rkey: 77 })]);
    expect(statuses(b)).to.deep.equal([
      [9n, WcStatus.LOC_ACCESS_ERR],
      [10n, WcStatus.WR_FLUSH_ERR],
    ]);
    expect(statuses(a)).to.deep.equal([[1n, WcStatus.REM_ACCESS_ERR]]);
  });

  it('LOC_PROT_ERR for a bad lkey, an SGE outside its MR, another PD, or a READ into an MR without local write', () => {
    const cases: ((a: Side) => Partial<SendWr>)[] = [
      (a) => ({ sgList: [{ addr: a.iova, length: 4, lkey: 999 }] }),
      (a) => ({ sgList: [{ addr: a.iova + a.mem.length - 1, length: 4, lkey: a.key }] }),
      (a) => ({ sgList: [{ addr: 0, length: 4, lkey: a.nic.regMr(a.nic.allocPd().handle, new HeapMemory(8), 0, 0).lkey }] }),
      (a) => ({ opcode: WrOpcode.RDMA_READ, sgList: [{ addr: 0, length: 4, lkey: a.nic.regMr(a.pd, new HeapMemory(8), 0, 0).lkey }] }),
    ];
    for (const make of cases) {
      const { a, b } = connectedPair();
      a.nic.postSend(a.qp.qpNum, [write(a, b, make(a))]);
      expect(statuses(a)).to.deep.equal([[1n, WcStatus.LOC_PROT_ERR]]);
      expect(a.qp.state).to.equal(QpState.ERR);
      expect(b.qp.state).to.equal(QpState.RTS);
    }
  });

  it('RNR: rnr_retry NAKs are retried after the RNR timer, then RNR_RETRY_EXC_ERR', async () => {
    const { a, b } = connectedPair({ rnrRetry: 3 });
    a.nic.postSend(a.qp.qpNum, [write(a, b, { opcode: WrOpcode.SEND })]);
    expect(statuses(a)).to.deep.equal([]);
    await settle(50);
    expect(a.qp.rnrRetries).to.equal(3);
    expect(statuses(a)).to.deep.equal([[1n, WcStatus.RNR_RETRY_EXC_ERR]]);
    expect(a.qp.state).to.equal(QpState.ERR);
  });

  it('RNR with rnr_retry 7 waits for the receive, holding later WRs in order', () => {
    const { a, b } = connectedPair({ rnrRetry: 7 });
    a.mem.buffer.set([5, 6, 7, 8]);
    a.nic.postSend(a.qp.qpNum, [write(a, b, { opcode: WrOpcode.SEND, sendFlags: IBV_SEND_SIGNALED }), write(a, b, { wrId: 2n, remoteAddr: b.iova + 100, sendFlags: IBV_SEND_SIGNALED })]);
    expect(a.poll()).to.deep.equal([]);
    expect([...b.mem.buffer.subarray(100, 104)]).to.deep.equal([0, 0, 0, 0]);
    b.nic.postRecv(b.qp.qpNum, [{ wrId: 50n, sgList: [{ addr: b.iova, length: 8, lkey: b.key }] }]);
    expect(statuses(a)).to.deep.equal([
      [1n, WcStatus.SUCCESS],
      [2n, WcStatus.SUCCESS],
    ]);
    expect([...b.mem.buffer.subarray(100, 104)]).to.deep.equal([5, 6, 7, 8]);
    expect(statuses(b)).to.deep.equal([[50n, WcStatus.SUCCESS]]);
  });

  it('a dead peer: retry_cnt retries, then RETRY_EXC_ERR', () => {
    const { a, b, fabric } = connectedPair({ retryCnt: 2 });
    fabric.partition(b.nic.gid, true);
    a.nic.postSend(a.qp.qpNum, [write(a, b)]);
    expect(a.qp.retries).to.equal(2);
    expect(statuses(a)).to.deep.equal([[1n, WcStatus.RETRY_EXC_ERR]]);
    expect(a.qp.state).to.equal(QpState.ERR);
  });

  it('a responder in ERR does not answer: RETRY_EXC_ERR', () => {
    const { a, b } = connectedPair({ retryCnt: 0 });
    b.qp.modify({ qpState: QpState.ERR }, 1);
    a.nic.postSend(a.qp.qpNum, [write(a, b)]);
    expect(statuses(a)).to.deep.equal([[1n, WcStatus.RETRY_EXC_ERR]]);
  });
});

describe('flush and CQ overflow', () => {
  it('modify to ERR flushes the stalled send queue then the receive queue, in order, once', () => {
    const { a, b } = connectedPair();
    a.nic.postRecv(a.qp.qpNum, [{ wrId: 10n, sgList: [] }, { wrId: 11n, sgList: [] }]);
    a.nic.postSend(a.qp.qpNum, [write(a, b, { wrId: 1n, opcode: WrOpcode.SEND }), write(a, b, { wrId: 2n }), write(a, b, { wrId: 3n })]);
    a.qp.modify({ qpState: QpState.ERR }, 1);
    expect(statuses(a)).to.deep.equal([
      [1n, WcStatus.WR_FLUSH_ERR],
      [2n, WcStatus.WR_FLUSH_ERR],
      [3n, WcStatus.WR_FLUSH_ERR],
      [10n, WcStatus.WR_FLUSH_ERR],
      [11n, WcStatus.WR_FLUSH_ERR],
    ]);
    b.nic.postRecv(b.qp.qpNum, [{ wrId: 1n, sgList: [] }]);
    expect(a.poll()).to.deep.equal([]);
  });

  it('posting in ERR flushes each WR at once, unsignaled included', () => {
    const { a, b } = connectedPair({ sqSigAll: false });
    a.qp.modify({ qpState: QpState.ERR }, 1);
    expect(a.nic.postSend(a.qp.qpNum, [write(a, b, { wrId: 4n })])).to.deep.equal({ posted: 1 });
    expect(a.nic.postRecv(a.qp.qpNum, [{ wrId: 5n, sgList: [] }])).to.deep.equal({ posted: 1 });
    expect(statuses(a)).to.deep.equal([
      [4n, WcStatus.WR_FLUSH_ERR],
      [5n, WcStatus.WR_FLUSH_ERR],
    ]);
  });

  it('RESET drops queued WRs and unpolled completions without flushing', () => {
    const { a, b } = connectedPair();
    a.nic.postSend(a.qp.qpNum, [write(a, b)]);
    a.nic.postRecv(a.qp.qpNum, [{ wrId: 10n, sgList: [] }]);
    a.qp.modify({ qpState: QpState.RESET }, 1);
    expect(a.poll()).to.deep.equal([]);
  });

  it('CQ overflow: CQ_ERR, the QPs on it to ERR with QP_FATAL, later completions lost', () => {
    const { a, b } = connectedPair({ cqe: 1 });
    expect(a.nic.cq(a.cq).cqe).to.equal(1);
    a.nic.postSend(a.qp.qpNum, [write(a, b, { wrId: 1n }), write(a, b, { wrId: 2n })]);
    expect(a.events).to.deep.equal([
      { type: AsyncEventType.CQ_ERR, cqHandle: a.cq },
      { type: AsyncEventType.QP_FATAL, qpNum: a.qp.qpNum },
    ]);
    expect(a.qp.state).to.equal(QpState.ERR);
    expect(statuses(a)).to.deep.equal([[1n, WcStatus.SUCCESS]]);
  });

  it('create_cq rounds up as mlx5 does and refuses 0', () => {
    const { a } = connectedPair();
    expect(a.nic.createCq(1).cqe).to.equal(1);
    expect(a.nic.createCq(2).cqe).to.equal(3);
    expect(a.nic.createCq(100).cqe).to.equal(127);
    expect(() => a.nic.createCq(0)).to.throw().with.property('errno', 'EINVAL');
  });
});
