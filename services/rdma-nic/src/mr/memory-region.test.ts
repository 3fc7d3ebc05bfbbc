import { expect } from 'chai';
import { ErrnoError } from '@p2p/errno';
import {
  IBV_ACCESS_LOCAL_WRITE,
  IBV_ACCESS_MW_BIND,
  IBV_ACCESS_ON_DEMAND,
  IBV_ACCESS_REMOTE_ATOMIC,
  IBV_ACCESS_REMOTE_READ,
  IBV_ACCESS_REMOTE_WRITE,
  IBV_ACCESS_RELAXED_ORDERING,
  IBV_ACCESS_HUGETLB,
  IBV_ACCESS_FLUSH_GLOBAL,
  IBV_ACCESS_FLUSH_PERSISTENT,
  IBV_ACCESS_ZERO_BASED,
} from '../verbs/access-flags';
import { AsyncEventType, QpState, WcStatus, WrOpcode } from '../verbs/enums';
import { IBV_SEND_SIGNALED } from '../verbs/send-flags';
import { HeapDmaBuf, HeapMemory } from '../testing/heap-memory';
import { connectedPair, settle } from '../testing/two-nics';

const RW = IBV_ACCESS_LOCAL_WRITE | IBV_ACCESS_REMOTE_WRITE | IBV_ACCESS_REMOTE_READ;

function expectErrno(fn: () => unknown, name: string): void {
  expect(fn).to.throw(ErrnoError).with.property('errno', name);
}

async function expectRejection(promise: Promise<unknown>, name: string): Promise<void> {
  const error: unknown = await promise.then(
    () => undefined,
    (e: unknown) => e,
  );
  expect(error).to.be.instanceOf(ErrnoError).with.property('errno', name);
}

describe('memory regions', () => {
  it('keys are unique and never 0; dereg makes a key stop resolving', () => {
    const { a } = connectedPair();
    const keys = new Set<number>();
    for (let i = 0; i < 300; i++) {
      const mr = a.nic.regMr(a.pd, new HeapMemory(8), 0, 0);
      expect(mr.lkey).to.not.equal(0);
      keys.add(mr.lkey);
    }
    expect(keys.size).to.equal(300);
  });

  it('ibv_reg_mr access as ib_check_mr_access() checks it: HUGETLB and the optional flags taken, ON_DEMAND and FLUSH EOPNOTSUPP, unknown bits and remote writes without LOCAL_WRITE EINVAL', () => {
    const { a } = connectedPair();
    const accepted = [IBV_ACCESS_HUGETLB, IBV_ACCESS_LOCAL_WRITE | IBV_ACCESS_HUGETLB, IBV_ACCESS_RELAXED_ORDERING, 1 << 21, 1 << 28, IBV_ACCESS_MW_BIND, IBV_ACCESS_ZERO_BASED, RW | IBV_ACCESS_REMOTE_ATOMIC];
    for (const access of accepted) expect(a.nic.regMr(a.pd, new HeapMemory(8), 0, access).access, `access 0x${access.toString(16)}`).to.equal(access);
    for (const access of [IBV_ACCESS_ON_DEMAND, IBV_ACCESS_FLUSH_GLOBAL, IBV_ACCESS_LOCAL_WRITE | IBV_ACCESS_FLUSH_PERSISTENT]) expectErrno(() => a.nic.regMr(a.pd, new HeapMemory(8), 0, access), 'EOPNOTSUPP');
    for (const access of [1 << 10, 1 << 19, 1 << 29, IBV_ACCESS_REMOTE_WRITE, IBV_ACCESS_REMOTE_ATOMIC | IBV_ACCESS_HUGETLB, -1]) expectErrno(() => a.nic.regMr(a.pd, new HeapMemory(8), 0, access), 'EINVAL');
  });

  it('ibv_reg_dmabuf_mr rules: page offset, access flags, LOCAL_WRITE, bounds', async () => {
    const { a } = connectedPair();
    const buf = new HeapDmaBuf(1 << 16);
    expect((await a.nic.regDmabufMr(a.pd, 0x1010, 0x100, 0x7000_0010, buf, RW | IBV_ACCESS_REMOTE_ATOMIC | IBV_ACCESS_RELAXED_ORDERING)).lkey).to.not.equal(0);
    await expectRejection(a.nic.regDmabufMr(a.pd, 0x1010, 0x100, 0x7000_0020, buf, RW), 'EINVAL');
    for (const access of [IBV_ACCESS_MW_BIND, IBV_ACCESS_ON_DEMAND, 1 << 7]) {
      await expectRejection(a.nic.regDmabufMr(a.pd, 0, 0x100, 0, buf, IBV_ACCESS_LOCAL_WRITE | access), 'EINVAL');
    }
    await expectRejection(a.nic.regDmabufMr(a.pd, 0, 0x100, 0, buf, IBV_ACCESS_REMOTE_WRITE), 'EINVAL');
    await expectRejection(a.nic.regDmabufMr(a.pd, 0, 0x100, 0, buf, IBV_ACCESS_REMOTE_ATOMIC), 'EINVAL');
    expect((await a.nic.regDmabufMr(a.pd, 0, 0x100, 0, buf, IBV_ACCESS_REMOTE_READ)).rkey).to.not.equal(0);
    await expectRejection(a.nic.regDmabufMr(a.pd, 0x8000, 0x8001, 0x8000, buf, RW), 'EINVAL');
    await expectRejection(a.nic.regDmabufMr(a.pd, Number.MAX_SAFE_INTEGER - 0xfff, 0x2000, 0, buf, RW), 'EINVAL');
    await expectRejection(a.nic.regDmabufMr(a.pd, 0, 0, 0, buf, RW), 'EINVAL');
    buf.revoked = true;
    await expectRejection(a.nic.regDmabufMr(a.pd, 0, 0x100, 0, buf, RW), 'ENODEV');
    expectErrno(() => a.nic.deallocPd(a.pd), 'EBUSY');
  });

  it('dealloc_pd is EBUSY while MRs or QPs use it', () => {
    const { a } = connectedPair();
    const pd = a.nic.allocPd().handle;
    const mr = a.nic.regMr(pd, new HeapMemory(8), 0, 0);
    expectErrno(() => a.nic.deallocPd(pd), 'EBUSY');
    a.nic.deregMr(mr.handle);
    a.nic.deallocPd(pd);
    expectErrno(() => a.nic.deallocPd(a.pd), 'EBUSY');
    expectErrno(() => a.nic.destroyCq(a.cq), 'EBUSY');
  });

  describe('dma-buf MR invalidation (move_notify)', () => {
    async function dmabufPair() {
      const pair = connectedPair();
      const buf = new HeapDmaBuf(1 << 16);
      const mr = await pair.b.nic.regDmabufMr(pair.b.pd, 0x1000, 0x1000, 0x9000, buf, RW);
      pair.a.mem.buffer.set([1, 2, 3, 4]);
      const post = (wrId: bigint) =>
        pair.a.nic.postSend(pair.a.qp.qpNum, [
          {
            wrId,
            opcode: WrOpcode.RDMA_WRITE,
            sgList: [{ addr: pair.a.iova, length: 4, lkey: pair.a.key }],
            sendFlags: IBV_SEND_SIGNALED,
            remoteAddr: 0x9010,
            rkey: mr.rkey,
          },
        ]);
      return { ...pair, buf, mr, post };
    }

    it('after invalidate the next access faults (RNR until mapped again) and the WRITE lands', async () => {
      const { a, b, buf, mr, post } = await dmabufPair();
      expect(mr.maps).to.equal(1);
      b.nic.invalidateDmabufMr(mr.handle);
      expect(mr.mapped).to.equal(false);
      post(1n);
      await settle();
      expect(mr.mapped).to.equal(true);
      expect(mr.maps).to.equal(2);
      expect(buf.maps).to.equal(2);
      expect([...buf.buffer.subarray(0x1010, 0x1014)]).to.deep.equal([1, 2, 3, 4]);
      post(2n);
      expect(mr.maps).to.equal(2);
      expect(a.poll().map((wc) => [wc.wrId, wc.status])).to.deep.equal([
        [1n, WcStatus.SUCCESS],
        [2n, WcStatus.SUCCESS],
      ]);
    });

    it('while revoked a WRITE to it completes with REM_ACCESS_ERR exactly once and no byte lands', async () => {
      const { a, b, buf, mr, post } = await dmabufPair();
      buf.revoked = true;
      b.nic.invalidateDmabufMr(mr.handle);
      post(1n);
      await settle();
      const completions = a.poll();
      expect(completions.map((wc) => [wc.wrId, wc.status])).to.deep.equal([[1n, WcStatus.REM_ACCESS_ERR]]);
      expect(a.poll()).to.deep.equal([]);
      expect(buf.buffer.every((byte) => byte === 0)).to.equal(true);
      expect(a.qp.state).to.equal(QpState.ERR);
      expect(b.events).to.deep.equal([{ type: AsyncEventType.QP_ACCESS_ERR, qpNum: b.qp.qpNum }]);
      expect(mr.mapped).to.equal(false);
    });

    it('a revoked dma-buf MR as a local SGE is LOC_PROT_ERR', async () => {
      const { a } = connectedPair();
      const buf = new HeapDmaBuf(0x1000);
      const mr = await a.nic.regDmabufMr(a.pd, 0, 0x1000, 0, buf, RW);
      buf.revoked = true;
      a.nic.invalidateDmabufMr(mr.handle);
      a.nic.postSend(a.qp.qpNum, [
        { wrId: 1n, opcode: WrOpcode.SEND, sgList: [{ addr: 0, length: 4, lkey: mr.lkey }], sendFlags: 0 },
      ]);
      await settle();
      expect(a.poll().map((wc) => wc.status)).to.deep.equal([WcStatus.LOC_PROT_ERR]);
    });
  });
});
