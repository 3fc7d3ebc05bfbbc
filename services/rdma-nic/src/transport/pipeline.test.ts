import { expect } from 'chai';
import { IBV_SEND_FENCE, IBV_SEND_SIGNALED } from '../verbs/send-flags';
import { QpState, WcStatus, WrOpcode } from '../verbs/enums';
import { DeferredFabric } from '../testing/deferred-fabric';
import { InMemoryFabric } from '../testing/in-memory-fabric';
import { WireOp, type WireReply, type WireRequest } from './fabric';
import { connectedPairOn, settle, type Side } from '../testing/two-nics';
import type { SendWr } from '../qp/work-request';

function write(a: Side, b: Side, wrId: bigint, offset: number, length = 4): SendWr {
  return {
    wrId,
    opcode: WrOpcode.RDMA_WRITE,
    sgList: [{ addr: a.iova + offset, length, lkey: a.key }],
    sendFlags: IBV_SEND_SIGNALED,
    remoteAddr: b.iova + offset,
    rkey: b.key,
  };
}

function read(a: Side, b: Side, wrId: bigint, offset: number, length = 4, sendFlags = IBV_SEND_SIGNALED): SendWr {
  return { ...write(a, b, wrId, offset, length), opcode: WrOpcode.RDMA_READ, sendFlags };
}

function statuses(side: Side): [bigint, number][] {
  return side.poll().map((wc) => [wc.wrId, wc.status]);
}

/** An in-memory fabric that notes the payload bytes each request carries. */
class PayloadLog extends InMemoryFabric {
  readonly carried: [number, number][] = [];

  override request(dgid: string, dqpn: number, request: WireRequest, timeoutMs: number, reply: WireReply): void {
    this.carried.push([request.op, request.payload.reduce((n, view) => n + view.length, 0)]);
    super.request(dgid, dqpn, request, timeoutMs, reply);
  }
}

describe('RC requests on the wire', () => {
  it('carry the gathered SGEs only for SEND and RDMA_WRITE; READ and atomics carry just the length', () => {
    const { a, b, fabric } = connectedPairOn(new PayloadLog());
    b.nic.postRecv(b.qp.qpNum, [{ wrId: 9n, sgList: [{ addr: b.iova, length: 64, lkey: b.key }] }]);
    a.nic.postSend(a.qp.qpNum, [
      write(a, b, 1n, 0, 64),
      read(a, b, 2n, 0, 4096),
      { wrId: 3n, opcode: WrOpcode.SEND, sgList: [{ addr: a.iova, length: 16, lkey: a.key }], sendFlags: 0 },
      { wrId: 4n, opcode: WrOpcode.ATOMIC_FETCH_AND_ADD, sgList: [{ addr: a.iova, length: 8, lkey: a.key }], sendFlags: 0, remoteAddr: b.iova, rkey: b.key, compareAdd: 1n },
    ]);
    expect(fabric.carried).to.deep.equal([
      [WireOp.RDMA_WRITE, 64],
      [WireOp.RDMA_READ, 0],
      [WireOp.SEND, 16],
      [WireOp.FETCH_ADD, 0],
    ]);
    expect(statuses(a).map(([, status]) => status)).to.deep.equal([WcStatus.SUCCESS, WcStatus.SUCCESS, WcStatus.SUCCESS, WcStatus.SUCCESS]);
  });
});

describe('RC pipelining over a wire with latency', () => {
  it('puts many WRs on the wire at once and completes them in post order', () => {
    const { a, b, fabric } = connectedPairOn(new DeferredFabric());
    for (let i = 0; i < 32; i++) {
      a.mem.buffer[i * 8] = i + 1;
    }
    a.nic.postSend(a.qp.qpNum, Array.from({ length: 32 }, (_, i) => write(a, b, BigInt(i), i * 8)));
    expect(fabric.inFlight).to.equal(32);
    expect(a.poll()).to.deep.equal([]);
    fabric.deliver();
    expect(statuses(a)).to.deep.equal(Array.from({ length: 32 }, (_, i) => [BigInt(i), WcStatus.SUCCESS]));
    expect(Array.from({ length: 32 }, (_, i) => b.mem.buffer[i * 8])).to.deep.equal(Array.from({ length: 32 }, (_, i) => i + 1));
  });

  it('keeps at most max_rd_atomic READs outstanding; a FENCE waits for them', () => {
    const { a, b, fabric } = connectedPairOn(new DeferredFabric(), { maxRdAtomic: 2 });
    a.nic.postSend(a.qp.qpNum, [read(a, b, 1n, 0), read(a, b, 2n, 8), read(a, b, 3n, 16)]);
    expect(fabric.inFlight).to.equal(2);
    fabric.deliver();
    expect(fabric.maxInFlight).to.equal(2);
    expect(statuses(a).map(([id]) => id)).to.deep.equal([1n, 2n, 3n]);

    a.nic.postSend(a.qp.qpNum, [read(a, b, 4n, 0), { ...write(a, b, 5n, 32), sendFlags: IBV_SEND_SIGNALED | IBV_SEND_FENCE }]);
    expect(fabric.inFlight).to.equal(1);
    fabric.deliver();
    expect(statuses(a).map(([id]) => id)).to.deep.equal([4n, 5n]);
  });

  it('a lost answer is retransmitted with its PSN; the responder answers the duplicate without running it again', async () => {
    const { a, b, fabric } = connectedPairOn(new DeferredFabric());
    const counter = new DataView(b.mem.buffer.buffer, 64, 8);
    counter.setBigUint64(0, 100n, true);
    a.mem.buffer.fill(9, 0, 4);
    a.nic.postSend(a.qp.qpNum, [
      { wrId: 1n, opcode: WrOpcode.ATOMIC_FETCH_AND_ADD, sgList: [{ addr: a.iova, length: 8, lkey: a.key }], sendFlags: IBV_SEND_SIGNALED, remoteAddr: b.iova + 64, rkey: b.key, compareAdd: 5n },
    ]);
    fabric.deliver({ loseAnswers: true });
    expect(counter.getBigUint64(0, true)).to.equal(105n);
    expect(a.qp.retries).to.equal(1);
    fabric.deliver();
    expect(counter.getBigUint64(0, true)).to.equal(105n);
    expect(statuses(a)).to.deep.equal([[1n, WcStatus.SUCCESS]]);
    expect(new DataView(a.mem.buffer.buffer, 0, 8).getBigUint64(0, true)).to.equal(100n);

    b.mem.buffer.fill(0, 200, 204);
    a.nic.postSend(a.qp.qpNum, [write(a, b, 2n, 200)]);
    fabric.deliver({ loseAnswers: true });
    b.mem.buffer.fill(7, 200, 204);
    fabric.deliver();
    expect(statuses(a)).to.deep.equal([[2n, WcStatus.SUCCESS]]);
    expect([...b.mem.buffer.subarray(200, 204)]).to.deep.equal([7, 7, 7, 7]);
    await settle(0);
  });

  it('an RNR NAK rewinds the queue: the WRs behind it, dropped by the responder, run once after the receive is posted', () => {
    const { a, b, fabric } = connectedPairOn(new DeferredFabric());
    a.mem.buffer.set([1, 2, 3, 4], 300);
    const send: SendWr = { wrId: 1n, opcode: WrOpcode.SEND, sgList: [{ addr: a.iova + 300, length: 4, lkey: a.key }], sendFlags: IBV_SEND_SIGNALED };
    a.nic.postSend(a.qp.qpNum, [send, write(a, b, 2n, 300), write(a, b, 3n, 300)]);
    expect(fabric.inFlight).to.equal(3);
    fabric.deliver();
    expect(a.poll()).to.deep.equal([]);
    expect([...b.mem.buffer.subarray(300, 304)]).to.deep.equal([0, 0, 0, 0]);
    b.nic.postRecv(b.qp.qpNum, [{ wrId: 9n, sgList: [{ addr: b.iova + 400, length: 16, lkey: b.key }] }]);
    fabric.deliver();
    expect(statuses(a)).to.deep.equal([
      [1n, WcStatus.SUCCESS],
      [2n, WcStatus.SUCCESS],
      [3n, WcStatus.SUCCESS],
    ]);
    expect(statuses(b)).to.deep.equal([[9n, WcStatus.SUCCESS]]);
    expect([...b.mem.buffer.subarray(400, 404)]).to.deep.equal([1, 2, 3, 4]);
  });

  it('an error mid-pipeline completes that WR with its status and flushes every later one, answered or not', () => {
    const { a, b, fabric } = connectedPairOn(new DeferredFabric());
    a.nic.postSend(a.qp.qpNum, [write(a, b, 1n, 0), { ...write(a, b, 2n, 0), rkey: b.key + 1 }, write(a, b, 3n, 8), write(a, b, 4n, 16)]);
    fabric.deliver();
    expect(statuses(a)).to.deep.equal([
      [1n, WcStatus.SUCCESS],
      [2n, WcStatus.REM_ACCESS_ERR],
      [3n, WcStatus.WR_FLUSH_ERR],
      [4n, WcStatus.WR_FLUSH_ERR],
    ]);
    expect(a.qp.state).to.equal(QpState.ERR);
  });

  it('modify to ERR with WRs in flight flushes them once; their late answers are ignored', () => {
    const { a, b, fabric } = connectedPairOn(new DeferredFabric());
    a.nic.postSend(a.qp.qpNum, [write(a, b, 1n, 0), write(a, b, 2n, 8)]);
    a.qp.modify({ qpState: QpState.ERR }, 1);
    fabric.deliver();
    expect(statuses(a)).to.deep.equal([
      [1n, WcStatus.WR_FLUSH_ERR],
      [2n, WcStatus.WR_FLUSH_ERR],
    ]);
    expect(a.poll()).to.deep.equal([]);
  });
});
