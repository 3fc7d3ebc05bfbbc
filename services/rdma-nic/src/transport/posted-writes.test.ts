import { expect } from 'chai';
import type { WorkCompletion } from '../cq/work-completion';
import type { SendWr } from '../qp/work-request';
import { HeapDmaBuf } from '../testing/heap-memory';
import { ALL_ACCESS, connectedPair, type Side } from '../testing/two-nics';
import { IBV_ACCESS_LOCAL_WRITE, IBV_ACCESS_REMOTE_READ } from '../verbs/access-flags';
import { WcStatus, WrOpcode } from '../verbs/enums';
import { IBV_SEND_SIGNALED } from '../verbs/send-flags';

/** A BAR dma-buf: `seen` holds, for each notice, the completions that had been made by then (none may have been). */
class WatchedDmaBuf extends HeapDmaBuf {
  readonly seen: WorkCompletion[][] = [];

  constructor(private readonly sides: readonly Side[]) {
    super(1 << 16);
  }

  override written(offset: number, length: number): void {
    super.written(offset, length);
    this.seen.push(this.sides.flatMap((side) => side.poll()));
  }
}

const MR_IOVA = 0x9000;
const MR_OFFSET = 0x1000;

/** Two connected NICs, the responder's BAR dma-buf registered at MR_IOVA from MR_OFFSET of the buffer. */
async function pair(access = ALL_ACCESS) {
  const { a, b } = connectedPair();
  const buf = new WatchedDmaBuf([a, b]);
  const mr = await b.nic.regDmabufMr(b.pd, MR_OFFSET, 0x1000, MR_IOVA, buf, access);
  a.mem.buffer.set([1, 2, 3, 4, 5, 6, 7, 8]);
  return { a, b, buf, mr };
}

function send(a: Side, fields: Partial<SendWr> & Pick<SendWr, 'opcode'>, length = 4): void {
  a.nic.postSend(a.qp.qpNum, [{ wrId: 1n, sgList: [{ addr: a.iova, length, lkey: a.key }], sendFlags: IBV_SEND_SIGNALED, ...fields }]);
}

describe('posted writes: a NIC tells the memory it wrote', () => {
  it('RDMA WRITE into a dma-buf MR: its range of the buffer, with the bytes in place, before the requester completes', async () => {
    const { a, buf, mr } = await pair();
    send(a, { opcode: WrOpcode.RDMA_WRITE, remoteAddr: MR_IOVA + 0x10, rkey: mr.rkey });
    expect(buf.writes).to.deep.equal([{ offset: MR_OFFSET + 0x10, length: 4, bytes: [1, 2, 3, 4] }]);
    expect(buf.seen).to.deep.equal([[]]);
    expect(a.poll().map((wc) => wc.status)).to.deep.equal([WcStatus.SUCCESS]);
  });

  it('RDMA WRITE with immediate: told before the receive completes at the responder', async () => {
    const { a, b, buf, mr } = await pair();
    b.nic.postRecv(b.qp.qpNum, [{ wrId: 5n, sgList: [] }]);
    send(a, { opcode: WrOpcode.RDMA_WRITE_WITH_IMM, immData: 7, remoteAddr: MR_IOVA, rkey: mr.rkey }, 8);
    expect(buf.writes).to.deep.equal([{ offset: MR_OFFSET, length: 8, bytes: [1, 2, 3, 4, 5, 6, 7, 8] }]);
    expect(buf.seen).to.deep.equal([[]]);
    expect(b.poll().map((wc) => wc.wrId)).to.deep.equal([5n]);
  });

  it('atomics: the 8-byte word, once it holds the new value', async () => {
    const { a, buf, mr } = await pair();
    send(a, { opcode: WrOpcode.ATOMIC_FETCH_AND_ADD, remoteAddr: MR_IOVA + 8, rkey: mr.rkey, compareAdd: 5n }, 8);
    expect(buf.writes).to.deep.equal([{ offset: MR_OFFSET + 8, length: 8, bytes: [5, 0, 0, 0, 0, 0, 0, 0] }]);
  });

  it('a SEND into a receive buffer in the MR, before the receive completes', async () => {
    const { a, b, buf, mr } = await pair();
    b.nic.postRecv(b.qp.qpNum, [{ wrId: 9n, sgList: [{ addr: MR_IOVA + 0x20, length: 16, lkey: mr.lkey }] }]);
    send(a, { opcode: WrOpcode.SEND });
    expect(buf.writes).to.deep.equal([{ offset: MR_OFFSET + 0x20, length: 4, bytes: [1, 2, 3, 4] }]);
    expect(buf.seen).to.deep.equal([[]]);
  });

  it('a READ answer landing in a dma-buf MR of the requester, before the READ completes', async () => {
    const { a, b } = connectedPair();
    b.mem.buffer.set([9, 8, 7, 6]);
    const local = new WatchedDmaBuf([a]);
    const localMr = await a.nic.regDmabufMr(a.pd, 0, 0x1000, 0x7000, local, ALL_ACCESS);
    a.nic.postSend(a.qp.qpNum, [
      { wrId: 2n, opcode: WrOpcode.RDMA_READ, sgList: [{ addr: 0x7040, length: 4, lkey: localMr.lkey }], sendFlags: IBV_SEND_SIGNALED, remoteAddr: b.iova, rkey: b.key },
    ]);
    expect(local.writes).to.deep.equal([{ offset: 0x40, length: 4, bytes: [9, 8, 7, 6] }]);
    expect(local.seen).to.deep.equal([[]]);
    expect(a.poll().map((wc) => wc.status)).to.deep.equal([WcStatus.SUCCESS]);
  });

  it('nothing for a write the MR refuses', async () => {
    const { a, buf, mr } = await pair(IBV_ACCESS_LOCAL_WRITE | IBV_ACCESS_REMOTE_READ);
    send(a, { opcode: WrOpcode.RDMA_WRITE, remoteAddr: MR_IOVA, rkey: mr.rkey });
    expect(buf.writes).to.deep.equal([]);
    expect(a.poll().map((wc) => wc.status)).to.deep.equal([WcStatus.REM_ACCESS_ERR]);
  });
});
