import * as path from 'node:path';
import { expect } from 'chai';
import { ErrnoError } from '@p2p/errno';
import { rdma } from '@p2p/proto';
import { eventually } from '@p2p/testing';
import { IBV_ACCESS_LOCAL_WRITE, IBV_ACCESS_REMOTE_WRITE, IBV_SEND_SIGNALED, type UserCq } from '@p2p/verbs';
import { HelperProcess, processState, rawClient, registryState } from '../dmabuf-registry/fixtures';
import { type HostBuffer, NIC1, RdmaHost, RdmaStack } from '../harness/rdma-hosts';

const { WrOpcode, WcStatus, WcOpcode } = rdma;
const SLOT = 64;
const ACCESS = IBV_ACCESS_LOCAL_WRITE | IBV_ACCESS_REMOTE_WRITE;

/** Everything `cq` completes until it has been quiet for `quietMs`. */
async function drain(cq: UserCq, quietMs: number): Promise<rdma.WorkCompletion[]> {
  const out: rdma.WorkCompletion[] = [];
  let last = Date.now();
  while (Date.now() - last < quietMs) {
    const got = cq.poll(64);
    if (got.length > 0) {
      out.push(...got);
      last = Date.now();
    }
    await new Promise((resolve) => setTimeout(resolve, 2));
  }
  return out;
}

describe('rdma-nic user queues under faults (every service its own process)', function () {
  this.timeout(60_000);
  let stack: RdmaStack;

  beforeEach(async () => {
    stack = await RdmaStack.start();
  });

  afterEach(async () => {
    await stack?.stop();
  });

  it('a process killed (SIGKILL) with SENDs in its send queue and the doorbell rung: the receiver gets a prefix of them, in order, each once; the NIC lets go of its rings', async () => {
    const y = await RdmaHost.open('receiver', stack.registry.address, stack.nics[0].process.address, stack.shmDir, 'user');
    const registry = rawClient(stack.registry.address, stack.shmDir);
    const { helper, ready } = await HelperProcess.startFile(path.join(__dirname, 'processes', 'ring-poster.js'), [stack.registry.address, stack.nics[1].process.address, stack.shmDir, 'poster']);
    try {
      const before = await registryState(registry);
      expect(before.processes.processes.map((p) => p.name)).to.include('poster');
      const buffer: HostBuffer = await y.hostBuffer(256 * SLOT, 0x40000, ACCESS);
      const qp = await y.rcQp({ cqe: 1023, maxSendWr: 16, maxRecvWr: 256 });
      await y.ctx.connectRc(qp.qpNum, { gid: Buffer.from(String(ready.gid), 'hex'), qpNum: Number(ready.qpNum) });
      await y.ctx.postRecv(
        qp.qpNum,
        Array.from({ length: 256 }, (_, i) => ({ wrId: BigInt(i), sgList: [{ addr: BigInt(0x40000 + i * SLOT), length: SLOT, lkey: buffer.mr.lkey }] })),
      );
      await helper.ok(`connect ${y.gid.toString('hex')} ${qp.qpNum}`);

      // What nic1 pinned for the poster (its doorbell page, CQ and QP rings, its MR): nic1 serves no one else.
      const pinnedByNic = (state: Awaited<ReturnType<typeof registryState>>): bigint[] =>
        state.buffers.filter((b) => b.attachments.some((a) => a.importerBdf === NIC1)).map((b) => b.bufferId);
      const posterBuffers = pinnedByNic(await registryState(registry));
      expect(posterBuffers).to.have.length(4);

      // The poster's NIC is frozen while the poster writes its WQEs and rings, then dies: they are in its ring, unfetched, when it goes.
      const nicPid = stack.nics[1].process.child.pid!;
      process.kill(nicPid, 'SIGSTOP');
      try {
        await eventually('the NIC to be stopped', async () => processState(nicPid) === 'T', 5000);
        const sent = await helper.ok('send 200');
        expect(sent.posted).to.equal(200);
        helper.signal('SIGKILL');
        await helper.exited;
      } finally {
        process.kill(nicPid, 'SIGCONT');
      }

      const completions = await drain(y.ctx.userCq(qp.cq)!, 500);
      expect(completions.every((wc) => wc.status === WcStatus.WC_STATUS_SUCCESS && wc.opcode === WcOpcode.WC_OPCODE_RECV)).to.equal(true);
      const stamps: number[] = [];
      for (const wc of completions) stamps.push((await y.session.cpuRead(buffer.fd, BigInt(Number(wc.wrId) * SLOT), 4n)).readUInt32LE(0));
      expect(stamps, 'SENDs received: a prefix of those posted, in order, none twice').to.deep.equal(Array.from({ length: stamps.length }, (_, i) => i));
      expect(completions.map((wc) => wc.wrId)).to.deep.equal(stamps.map((_, i) => BigInt(i)));

      // The dead process's context went with its session: the NIC detached its doorbell page, rings and MR, and the heap let the buffers go.
      await eventually(
        'the poster and its buffers to be gone from the registry',
        async () => {
          const now = await registryState(registry);
          const left = new Set(now.buffers.map((b) => b.bufferId));
          return !now.processes.processes.some((p) => p.name === 'poster') && posterBuffers.every((id) => !left.has(id));
        },
        10_000,
      );
    } finally {
      await helper.kill();
      registry.close();
      await y.close();
    }
  });

  it('a NIC frozen (SIGSTOP) while its process keeps posting: the send queue fills and ibv_post_send() fails with ENOMEM at once, no hang; after SIGCONT every WR completes once', async () => {
    const x = await RdmaHost.open('poster', stack.registry.address, stack.nics[1].process.address, stack.shmDir, 'user');
    const y = await RdmaHost.open('target', stack.registry.address, stack.nics[0].process.address, stack.shmDir, 'user');
    try {
      const xBuf = await x.hostBuffer(64 * 1024, 0x10000, ACCESS);
      const yBuf = await y.hostBuffer(64 * 1024, 0x20000, ACCESS);
      const xQp = await x.rcQp({ cqe: 255, maxSendWr: 16, maxRecvWr: 16 });
      const yQp = await y.rcQp({ cqe: 255, maxSendWr: 16, maxRecvWr: 16 });
      await x.ctx.connectRc(xQp.qpNum, { gid: y.gid, qpNum: yQp.qpNum }, { access: ACCESS });
      await y.ctx.connectRc(yQp.qpNum, { gid: x.gid, qpNum: xQp.qpNum }, { access: ACCESS });
      const qp = x.ctx.userQp(xQp.qpNum)!;
      const write = (wrId: number): rdma.SendWr =>
        rdma.SendWr.fromPartial({ wrId: BigInt(wrId), opcode: WrOpcode.WR_OPCODE_RDMA_WRITE, sendFlags: IBV_SEND_SIGNALED, sgList: [{ addr: 0x10000n, length: 64, lkey: xBuf.mr.lkey }], remoteAddr: 0x20000n, rkey: yBuf.mr.rkey });

      const nicPid = stack.nics[1].process.child.pid!;
      process.kill(nicPid, 'SIGSTOP');
      await eventually('the NIC to be stopped', async () => processState(nicPid) === 'T', 5000);
      try {
        let posted = 0;
        let failure: ErrnoError | undefined;
        const started = Date.now();
        while (failure === undefined && posted < 100) {
          try {
            posted += qp.postSend([write(posted)]);
          } catch (error) {
            failure = error as ErrnoError;
          }
        }
        expect(Date.now() - started, 'posting into a full ring waits for nothing').to.be.below(1000);
        expect([posted, failure?.errno]).to.deep.equal([16, 'ENOMEM']);
      } finally {
        process.kill(nicPid, 'SIGCONT');
      }
      const completions = await drain(x.ctx.userCq(xQp.cq)!, 500);
      expect(completions.map((wc) => [Number(wc.wrId), wc.status])).to.deep.equal(Array.from({ length: 16 }, (_, i) => [i, WcStatus.WC_STATUS_SUCCESS]));
      expect(qp.postSend([write(16)])).to.equal(1);
      expect((await drain(x.ctx.userCq(xQp.cq)!, 200)).map((wc) => wc.wrId)).to.deep.equal([16n]);
    } finally {
      await x.close();
      await y.close();
    }
  });
});
