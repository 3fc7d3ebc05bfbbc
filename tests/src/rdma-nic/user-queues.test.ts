import { expect } from 'chai';
import { O_RDONLY } from '@p2p/dmabuf-client';
import { ErrnoError } from '@p2p/errno';
import { rdma } from '@p2p/proto';
import { errnoOf } from '@p2p/status';
import { IBV_ACCESS_LOCAL_WRITE, IBV_ACCESS_ON_DEMAND, IBV_ACCESS_REMOTE_READ, IBV_REREG_MR_CHANGE_ACCESS, IBV_REREG_MR_CHANGE_PD, IBV_REREG_MR_CHANGE_TRANSLATION, IBV_ACCESS_REMOTE_WRITE, IBV_QP_EX_WITH_RDMA_READ, IBV_QP_EX_WITH_RDMA_WRITE, IBV_QP_EX_WITH_TSO, IBV_SEND_SIGNALED, type UserCq } from '@p2p/verbs';
import { type HostBuffer, RdmaHost, RdmaStack } from '../harness/rdma-hosts';

const { WrOpcode, WcStatus, WcOpcode } = rdma;
const SIZE = 64 * 1024;
const ACCESS = IBV_ACCESS_LOCAL_WRITE | IBV_ACCESS_REMOTE_WRITE | IBV_ACCESS_REMOTE_READ;

function sendWr(wr: Partial<rdma.SendWr>): rdma.SendWr {
  return rdma.SendWr.fromPartial({ sendFlags: IBV_SEND_SIGNALED, ...wr });
}

/** Polls `cq` in this process's memory until `count` completions came (each poll a function call), giving up after `timeoutMs`. */
async function reap(cq: UserCq, count: number, timeoutMs = 5000): Promise<rdma.WorkCompletion[]> {
  const out: rdma.WorkCompletion[] = [];
  const deadline = Date.now() + timeoutMs;
  while (out.length < count) {
    out.push(...cq.poll(count - out.length));
    if (out.length >= count) break;
    if (Date.now() > deadline) throw new Error(`${out.length} of ${count} completions after ${timeoutMs} ms`);
    await new Promise((resolve) => setImmediate(resolve));
  }
  return out;
}

function thrown(run: () => unknown): (ErrnoError & { posted?: number }) | undefined {
  try {
    run();
  } catch (error) {
    if (error instanceof ErrnoError) return error;
    throw error;
  }
  return undefined;
}

describe('rdma-nic user queues: work queues and CQs in the process\'s memory, doorbells, no call per post or poll (every service its own process)', function () {
  this.timeout(60_000);
  let stack: RdmaStack;
  let x: RdmaHost;
  let y: RdmaHost;
  let xBuf: HostBuffer;
  let yBuf: HostBuffer;
  let xQp: { cq: number; qpNum: number };
  let yQp: { cq: number; qpNum: number };

  before(async () => {
    stack = await RdmaStack.start();
    x = await RdmaHost.open('host-x', stack.registry.address, stack.nics[1].process.address, stack.shmDir, 'user');
    y = await RdmaHost.open('host-y', stack.registry.address, stack.nics[0].process.address, stack.shmDir, 'user');
    xBuf = await x.hostBuffer(SIZE, 0x10000, ACCESS);
    yBuf = await y.hostBuffer(SIZE, 0x20000, ACCESS);
    xQp = await x.rcQp({ cqe: 63, maxSendWr: 16, maxRecvWr: 16 });
    yQp = await y.rcQp({ cqe: 63, maxSendWr: 16, maxRecvWr: 16 });
    await x.ctx.connectRc(xQp.qpNum, { gid: y.gid, qpNum: yQp.qpNum }, { access: ACCESS });
    await y.ctx.connectRc(yQp.qpNum, { gid: x.gid, qpNum: xQp.qpNum }, { access: ACCESS });
  });

  after(async () => {
    await x?.close();
    await y?.close();
    await stack?.stop();
  });

  it('opens the context with user queues: its QPs and CQs live in its memory', () => {
    expect(x.ctx.queueMode).to.equal('user');
    expect(x.ctx.userQp(xQp.qpNum)?.layout.sqEntries).to.equal(16);
    expect(x.ctx.userCq(xQp.cq)?.entries).to.equal(64);
  });

  it('RDMA WRITE: posted into the ring, completed into the CQ ring, the bytes in the remote buffer', async () => {
    const payload = Buffer.alloc(4096, 0xa5);
    await x.session.cpuWrite(xBuf.fd, 0n, payload);
    const posted = x.ctx.userQp(xQp.qpNum)!.postSend([sendWr({ wrId: 11n, opcode: WrOpcode.WR_OPCODE_RDMA_WRITE, sgList: [{ addr: 0x10000n, length: 4096, lkey: xBuf.mr.lkey }], remoteAddr: 0x20000n + 4096n, rkey: yBuf.mr.rkey })]);
    expect(posted).to.equal(1);
    const [wc] = await reap(x.ctx.userCq(xQp.cq)!, 1);
    expect(wc).to.include({ wrId: 11n, status: WcStatus.WC_STATUS_SUCCESS, opcode: WcOpcode.WC_OPCODE_RDMA_WRITE, qpNum: xQp.qpNum });
    expect(await y.session.cpuRead(yBuf.fd, 4096n, 4096n)).to.deep.equal(payload);
  });

  it('SEND with immediate into a receive posted in the ring, and RDMA READ back', async () => {
    await y.ctx.postRecv(yQp.qpNum, [{ wrId: 21n, sgList: [{ addr: 0x20000n + 8192n, length: 4096, lkey: yBuf.mr.lkey }] }]);
    const message = Buffer.from('a message through the rings');
    await x.session.cpuWrite(xBuf.fd, 8192n, message);
    await x.ctx.postSend(xQp.qpNum, [sendWr({ wrId: 22n, opcode: WrOpcode.WR_OPCODE_SEND_WITH_IMM, immData: 0x1234, sgList: [{ addr: 0x10000n + 8192n, length: message.length, lkey: xBuf.mr.lkey }] })]);
    const [recv] = await reap(y.ctx.userCq(yQp.cq)!, 1);
    expect(recv).to.include({ wrId: 21n, status: WcStatus.WC_STATUS_SUCCESS, opcode: WcOpcode.WC_OPCODE_RECV, byteLen: message.length, immData: 0x1234, withImm: true, srcQp: xQp.qpNum });
    expect((await reap(x.ctx.userCq(xQp.cq)!, 1))[0]).to.include({ wrId: 22n, status: WcStatus.WC_STATUS_SUCCESS });
    expect(await y.session.cpuRead(yBuf.fd, 8192n, BigInt(message.length))).to.deep.equal(message);

    await x.ctx.postSend(xQp.qpNum, [sendWr({ wrId: 23n, opcode: WrOpcode.WR_OPCODE_RDMA_READ, sgList: [{ addr: 0x10000n + 16384n, length: message.length, lkey: xBuf.mr.lkey }], remoteAddr: 0x20000n + 8192n, rkey: yBuf.mr.rkey })]);
    expect((await reap(x.ctx.userCq(xQp.cq)!, 1))[0]).to.include({ wrId: 23n, status: WcStatus.WC_STATUS_SUCCESS, opcode: WcOpcode.WC_OPCODE_RDMA_READ, byteLen: message.length });
    expect(await x.session.cpuRead(xBuf.fd, 16384n, BigInt(message.length))).to.deep.equal(message);
  });

  it('completes 200 WRITEs in post order through a 16-entry queue, freeing slots as completions are polled', async () => {
    const qp = x.ctx.userQp(xQp.qpNum)!;
    const cq = x.ctx.userCq(xQp.cq)!;
    const seen: bigint[] = [];
    let next = 0;
    while (seen.length < 200) {
      while (next < 200) {
        const failure = thrown(() => qp.postSend([sendWr({ wrId: BigInt(1000 + next), opcode: WrOpcode.WR_OPCODE_RDMA_WRITE, sgList: [{ addr: 0x10000n, length: 64, lkey: xBuf.mr.lkey }], remoteAddr: 0x20000n, rkey: yBuf.mr.rkey })]));
        if (failure !== undefined) {
          expect(failure.errno).to.equal('ENOMEM');
          break;
        }
        next++;
      }
      for (const wc of cq.poll(16)) {
        expect(wc.status).to.equal(WcStatus.WC_STATUS_SUCCESS);
        seen.push(wc.wrId);
      }
      await new Promise((resolve) => setImmediate(resolve));
    }
    expect(seen).to.deep.equal(Array.from({ length: 200 }, (_, i) => BigInt(1000 + i)));
  });

  it('refuses as libibverbs does, in the process: a full queue is ENOMEM, a bad opcode or too many SGEs EINVAL, with the WRs before posted', async () => {
    const qp = x.ctx.userQp(xQp.qpNum)!;
    const write = (wrId: bigint): rdma.SendWr => sendWr({ wrId, opcode: WrOpcode.WR_OPCODE_RDMA_WRITE, sgList: [{ addr: 0x10000n, length: 8, lkey: xBuf.mr.lkey }], remoteAddr: 0x20000n, rkey: yBuf.mr.rkey });
    const bad = thrown(() => qp.postSend([write(1n), sendWr({ wrId: 2n, opcode: 99 as rdma.WrOpcode })]));
    expect([bad?.errno, bad?.posted]).to.deep.equal(['EINVAL', 1]);
    const sges = thrown(() => qp.postSend([sendWr({ wrId: 3n, opcode: WrOpcode.WR_OPCODE_RDMA_WRITE, sgList: [{ addr: 0x10000n, length: 8, lkey: xBuf.mr.lkey }, { addr: 0x10008n, length: 8, lkey: xBuf.mr.lkey }] })]));
    expect([sges?.errno, sges?.posted]).to.deep.equal(['EINVAL', 0]);
    // 15 more fill the 16 slots (the one above is not polled yet); the 17th is ENOMEM.
    expect(qp.postSend(Array.from({ length: 15 }, (_, i) => write(BigInt(100 + i))))).to.equal(15);
    const full = thrown(() => qp.postSend([write(200n)]));
    expect([full?.errno, full?.posted]).to.deep.equal(['ENOMEM', 0]);
    expect((await reap(x.ctx.userCq(xQp.cq)!, 16)).map((wc) => wc.wrId)).to.deep.equal([1n, ...Array.from({ length: 15 }, (_, i) => BigInt(100 + i))]);
    expect(qp.postSend([write(201n)])).to.equal(1);
    await reap(x.ctx.userCq(xQp.cq)!, 1);
  });

  it('the NIC refuses the calls for queues in user memory: PostSend, PostRecv and PollCq are EINVAL', async () => {
    const nic = new rdma.RdmaNicServiceClient(stack.nics[1].process.address, (await import('@grpc/grpc-js')).credentials.createInsecure(), { interceptors: [x.session.interceptor] });
    try {
      const call = <T>(run: (cb: (error: Error | null, value?: T) => void) => void): Promise<unknown> => new Promise((resolve) => run((error) => resolve(error)));
      const base = { pid: x.session.pid, contextFd: x.ctx.fd };
      expect(errnoOf(await call((cb) => nic.postSend({ ...base, qpNum: xQp.qpNum, wrs: [] }, cb)))).to.equal('EINVAL');
      expect(errnoOf(await call((cb) => nic.postRecv({ ...base, qpNum: xQp.qpNum, wrs: [] }, cb)))).to.equal('EINVAL');
      expect(errnoOf(await call((cb) => nic.pollCq({ ...base, cqHandle: xQp.cq, maxEntries: 1 }, cb)))).to.equal('EINVAL');
    } finally {
      nic.close();
    }
  });

  it('ibv_query_qp gives the capacities the QP was created with, and the MR answer the addresses it covers', async () => {
    expect(await x.ctx.queryQpCap(xQp.qpNum)).to.deep.equal({ maxSendWr: 16, maxRecvWr: 16, maxSendSge: 1, maxRecvSge: 1, maxInlineData: 0 });
    expect([xBuf.mr.addr, xBuf.mr.length]).to.deep.equal([0x10000n, BigInt(SIZE)]);
    const { cqHandle } = await x.ctx.createCq(15);
    const inline = await x.ctx.createQp({ pdHandle: x.pd, sendCqHandle: cqHandle, recvCqHandle: cqHandle, cap: { maxSendWr: 4, maxRecvWr: 4, maxSendSge: 1, maxRecvSge: 1, maxInlineData: 64 } }).then(
      () => undefined,
      (error: unknown) => errnoOf(error),
    );
    expect(inline, 'max_inline_data on a device that has none').to.equal('EINVAL');
    await x.ctx.destroyCq(cqHandle);
  });

  it('the extended QP API: ibv_wr_*() batches posted all or nothing by ibv_wr_complete()', async () => {
    const { cqHandle } = await x.ctx.createCq(63);
    const { cqHandle: yCq } = await y.ctx.createCq(63);
    const qpx = await x.ctx.createQpEx({
      pdHandle: x.pd,
      sendCqHandle: cqHandle,
      recvCqHandle: cqHandle,
      cap: { maxSendWr: 4, maxRecvWr: 4, maxSendSge: 2, maxRecvSge: 1 },
      sendOpsFlags: IBV_QP_EX_WITH_RDMA_WRITE | IBV_QP_EX_WITH_RDMA_READ,
    });
    const { qpNum: peer } = await y.ctx.createQp({ pdHandle: y.pd, sendCqHandle: yCq, recvCqHandle: yCq, cap: { maxSendWr: 4, maxRecvWr: 4, maxSendSge: 1, maxRecvSge: 1 } });
    await x.ctx.connectRc(qpx.qpNum, { gid: y.gid, qpNum: peer }, { access: ACCESS });
    await y.ctx.connectRc(peer, { gid: x.gid, qpNum: qpx.qpNum }, { access: ACCESS });
    const cq = x.ctx.userCq(cqHandle)!;
    await x.session.cpuWrite(xBuf.fd, 0n, Buffer.from('0123456789abcdef'));

    qpx.wrStart();
    qpx.wrFlags = IBV_SEND_SIGNALED;
    qpx.wrId = 1n;
    qpx.wrRdmaWrite(yBuf.mr.rkey, 0x20000n + 32768n);
    qpx.wrSetSgeList([{ lkey: xBuf.mr.lkey, addr: 0x10000n, length: 8 }, { lkey: xBuf.mr.lkey, addr: 0x10008n, length: 8 }]);
    qpx.wrId = 2n;
    qpx.wrRdmaRead(yBuf.mr.rkey, 0x20000n + 32768n);
    qpx.wrSetSge(xBuf.mr.lkey, 0x10000n + 4096n, 16);
    qpx.wrComplete();
    expect((await reap(cq, 2)).map((wc) => [wc.wrId, wc.status])).to.deep.equal([[1n, WcStatus.WC_STATUS_SUCCESS], [2n, WcStatus.WC_STATUS_SUCCESS]]);
    expect((await x.session.cpuRead(xBuf.fd, 4096n, 16n)).toString()).to.equal('0123456789abcdef');

    const failed = (build: () => void): string | undefined => {
      qpx.wrStart();
      build();
      return thrown(() => qpx.wrComplete())?.errno;
    };
    expect(failed(() => qpx.wrAtomicFetchAdd(yBuf.mr.rkey, 0x20000n, 1n)), 'an op outside send_ops_flags').to.equal('EOPNOTSUPP');
    expect(failed(() => qpx.wrSetSge(xBuf.mr.lkey, 0x10000n, 8)), 'an SGE before any op').to.equal('EINVAL');
    const five = (): void => {
      for (let i = 0; i < 5; i++) {
        qpx.wrRdmaWrite(yBuf.mr.rkey, 0x20000n);
        qpx.wrSetSge(xBuf.mr.lkey, 0x10000n, 8);
      }
    };
    expect(failed(five), 'five WRs for four slots').to.equal('ENOMEM');
    qpx.wrStart();
    qpx.wrRdmaWrite(yBuf.mr.rkey, 0x20000n);
    qpx.wrAbort();
    expect(thrown(() => qpx.wrRdmaWrite(yBuf.mr.rkey, 0x20000n))?.errno, 'an op outside a batch').to.equal('EINVAL');
    await new Promise((resolve) => setTimeout(resolve, 50));
    expect(cq.poll(8), 'what failed or was aborted was not posted').to.deep.equal([]);
    expect(await x.ctx.createQpEx({ pdHandle: x.pd, sendCqHandle: cqHandle, recvCqHandle: cqHandle, cap: { maxSendWr: 4, maxRecvWr: 4, maxSendSge: 1, maxRecvSge: 1 }, sendOpsFlags: IBV_QP_EX_WITH_TSO }).then(() => 'created', (error: unknown) => errnoOf(error))).to.equal('EOPNOTSUPP');
  });

  it('ibv_rereg_mr: new access, then new memory, under the same keys; refused as libibverbs refuses it, and a refusal changes nothing', async () => {
    const { fd: first } = await x.session.heapAllocate(8192);
    const { fd: second } = await x.session.heapAllocate(8192);
    const mr = await x.ctx.regMr(x.pd, { heapFd: first, length: 4096, iova: 0x50000, access: IBV_ACCESS_LOCAL_WRITE });
    const write = async (wrId: bigint, remoteAddr: bigint, payload: Buffer): Promise<number> => {
      await y.session.cpuWrite(yBuf.fd, 0n, payload);
      await y.ctx.postSend(yQp.qpNum, [sendWr({ wrId, opcode: WrOpcode.WR_OPCODE_RDMA_WRITE, sgList: [{ addr: 0x20000n, length: payload.length, lkey: yBuf.mr.lkey }], remoteAddr, rkey: mr.rkey })]);
      return (await reap(y.ctx.userCq(yQp.cq)!, 1))[0]!.status;
    };
    const rereg = (flags: number, change: Parameters<typeof x.ctx.reregMr>[2]): Promise<string | rdma.ReregMrResponse> => x.ctx.reregMr(mr.mrHandle, flags, change).catch((error: unknown) => errnoOf(error) ?? String(error));

    expect(await rereg(IBV_REREG_MR_CHANGE_ACCESS, { access: ACCESS })).to.deep.include({ lkey: mr.lkey, rkey: mr.rkey, addr: 0x50000n, length: 4096n });
    expect(await write(41n, 0x50000n + 8n, Buffer.from('remote write now allowed'))).to.equal(WcStatus.WC_STATUS_SUCCESS);
    expect((await x.session.cpuRead(first, 8n, 24n)).toString()).to.equal('remote write now allowed');

    expect(await rereg(IBV_REREG_MR_CHANGE_TRANSLATION, { heapFd: second, offset: 4096, length: 4096, iova: 0x60000 })).to.deep.include({ lkey: mr.lkey, addr: 0x60000n, length: 4096n });
    expect(await write(42n, 0x60000n, Buffer.from('into the new memory'))).to.equal(WcStatus.WC_STATUS_SUCCESS);
    expect((await x.session.cpuRead(second, 4096n, 19n)).toString()).to.equal('into the new memory');

    const refusals = {
      'flags 0': await rereg(0, {}),
      'an unknown flag': await rereg(1 << 3, {}),
      'a translation of length 0': await rereg(IBV_REREG_MR_CHANGE_TRANSLATION, { heapFd: first, length: 0, iova: 0x70000 }),
      'access without CHANGE_ACCESS': await rereg(IBV_REREG_MR_CHANGE_PD, { pdHandle: x.pd, access: ACCESS }),
      'an unknown PD': await rereg(IBV_REREG_MR_CHANGE_PD, { pdHandle: 9999 }),
      'ON_DEMAND': await rereg(IBV_REREG_MR_CHANGE_ACCESS, { access: IBV_ACCESS_LOCAL_WRITE | IBV_ACCESS_ON_DEMAND }),
      'memory past the buffer': await rereg(IBV_REREG_MR_CHANGE_TRANSLATION, { heapFd: first, offset: 4096, length: 8192, iova: 0x70000 }),
    };
    expect(refusals).to.deep.equal({
      'flags 0': 'EINVAL',
      'an unknown flag': 'EINVAL',
      'a translation of length 0': 'EINVAL',
      'access without CHANGE_ACCESS': 'EINVAL',
      'an unknown PD': 'EINVAL',
      ON_DEMAND: 'EOPNOTSUPP',
      'memory past the buffer': 'EFAULT',
    });
    // Nothing changed: the MR still covers the second buffer with remote write.
    expect(await write(43n, 0x60000n + 64n, Buffer.from('still there'))).to.equal(WcStatus.WC_STATUS_SUCCESS);
    expect((await x.session.cpuRead(second, 4096n + 64n, 11n)).toString()).to.equal('still there');

    const { fd: readOnly } = await x.session.heapAllocate(4096, O_RDONLY);
    const readMr = await x.ctx.regMr(x.pd, { heapFd: readOnly, length: 4096, iova: 0x80000, access: IBV_ACCESS_REMOTE_READ });
    expect(await x.ctx.reregMr(readMr.mrHandle, IBV_REREG_MR_CHANGE_ACCESS, { access: IBV_ACCESS_LOCAL_WRITE }).catch((error: unknown) => errnoOf(error)), 'a writable access on read-only memory').to.equal('EFAULT');
    const bar = await x.barBuffer(stack.vfioPci.address, 0, 4096, 0x90000, ACCESS);
    expect(await x.ctx.reregMr(bar.mr.mrHandle, IBV_REREG_MR_CHANGE_ACCESS, { access: IBV_ACCESS_LOCAL_WRITE }).catch((error: unknown) => errnoOf(error)), 'a dma-buf MR').to.equal('EINVAL');
  });

  it('raises a completion event on an armed CQ, and sleeps when idle: a post then wakes it with one byte on the doorbell socket', async () => {
    const cq = x.ctx.userCq(xQp.cq)!;
    await new Promise((resolve) => setTimeout(resolve, 50));
    const wakeUps = x.ctx.userQueues!.wakeUps;
    x.ctx.reqNotifyCq(xQp.cq);
    const event = x.ctx.getCqEvent(xQp.cq);
    await x.ctx.postSend(xQp.qpNum, [sendWr({ wrId: 31n, opcode: WrOpcode.WR_OPCODE_RDMA_WRITE, sgList: [{ addr: 0x10000n, length: 8, lkey: xBuf.mr.lkey }], remoteAddr: 0x20000n, rkey: yBuf.mr.rkey })]);
    expect(x.ctx.userQueues!.wakeUps).to.equal(wakeUps + 1);
    await event;
    expect(cq.poll(4).map((wc) => wc.wrId)).to.deep.equal([31n]);
  });
});
