import { execFileSync } from 'node:child_process';
import { credentials } from '@grpc/grpc-js';
import { expect } from 'chai';
import { RegistrySession } from '@p2p/dmabuf-client';
import { rdma, vfio } from '@p2p/proto';
import { errnoOf } from '@p2p/status';
import { platformSecretsOf } from '@p2p/testing';
import { ACCEL0, type BarBuffer, type HostBuffer, type RdmaHost, RdmaStack } from '../harness/rdma-hosts';
import { rpc } from '../harness/rpc';
import {
  notLanded,
  patterned,
  QUICK_RETRY,
  rcPair,
  tallyCompletions,
  TRANSFER_ACCESS as ACCESS,
  TRANSFER_IOVA as IOVA,
  Transfer,
  transferBetween,
  WC_STATUS_LOC_PROT_ERR,
  WC_STATUS_REM_ACCESS_ERR,
  WC_STATUS_RETRY_EXC_ERR,
  WC_STATUS_SUCCESS,
  wcStatusName,
} from '../harness/rdma-transfer';
import { deviceMemory } from '../harness/device-memory';

const KiB = 1024;
const MiB = 1024 * KiB;
const SIZE = 64 * KiB;
const COUNT = 512;
const CONFIG_REGION = 7;
const PCI_COMMAND = 0x04;
const PCI_COMMAND_MASTER = 0x4;

/** The WR ids each status got, checked for the RC contract: every WR once, successes first, then one error, then flushes. */
function expectRcErrorShape(transfer: Transfer, error: number, minSucceeded: number): { succeeded: number[]; failed: number } {
  const tally = tallyCompletions(transfer);
  if (process.env.DEBUG_FAULTS) console.log(JSON.stringify(tally.runs));
  expect(tally.everyOnce, `every WR completed exactly once (${tally.runs.join(', ')})`).to.equal(true);
  expect(tally.failed, 'the WR that failed').to.have.length(1);
  const failed = tally.failed[0]!;
  expect(wcStatusName(failed.status), `the status of wr ${failed.wrId}`).to.equal(wcStatusName(error));
  expect(tally.succeeded).to.deep.equal(Array.from({ length: failed.wrId }, (_, i) => i));
  expect(tally.flushed).to.deep.equal(Array.from({ length: transfer.posted - failed.wrId - 1 }, (_, i) => failed.wrId + 1 + i));
  expect(tally.inPostOrder, 'completions in post order').to.equal(true);
  expect(tally.succeeded.length, `WRs that succeeded before the fault (${tally.runs.join(', ')})`).to.be.at.least(minSucceeded);
  return { succeeded: tally.succeeded, failed: failed.wrId };
}

function expectLanded(target: Buffer, succeeded: readonly number[]): void {
  expect(notLanded(target, succeeded, SIZE), 'successful WRs whose bytes are not there').to.deep.equal([]);
}

async function sleep(ms: number): Promise<void> {
  await new Promise((resolve) => setTimeout(resolve, ms));
}

// Both post paths: queues in the process's memory (the TS client's default), and posting through calls.
for (const queues of ['user', 'calls'] as const) {
  describe(`rdma-nic faults (every service its own process), ${queues === 'user' ? 'user queues' : 'posting through calls'}`, function () {
    this.timeout(60_000);
    let stack: RdmaStack;
    let hosts: RdmaHost[] = [];

    beforeEach(async () => {
      stack = await RdmaStack.start();
      hosts = [];
    });

    afterEach(async () => {
      for (const host of hosts) await host.close().catch(() => undefined);
      await stack.stop();
    });

    /** Host Y (nic0) writing COUNT patterned 64 KiB WRs into host X's (nic1) memory. */
    function writerAndTarget(): ReturnType<typeof writer<HostBuffer>> {
      return writer((x) => x.hostBuffer(COUNT * SIZE, IOVA, ACCESS));
    }

    /** The same into accel0's BAR, registered on nic1 as a dma-buf MR. */
    function writerIntoBar(): ReturnType<typeof writer<BarBuffer>> {
      return writer((x) => x.barBuffer(stack.vfioPci.address, 0, COUNT * SIZE, IOVA, ACCESS));
    }

    async function writer<T extends { mr: { rkey: number } }>(makeTarget: (x: RdmaHost) => Promise<T>) {
      const y = await stack.host(0, 'host-y', queues);
      const x = await stack.host(1, 'host-x', queues);
      hosts.push(y, x);
      const source = await y.hostBuffer(COUNT * SIZE, IOVA, ACCESS);
      const target = await makeTarget(x);
      await source.cpu.copyFromBuffer(0, patterned(COUNT, SIZE));
      const { transfer, a, b } = await transferBetween(y, x, QUICK_RETRY, {
        opcode: rdma.WrOpcode.WR_OPCODE_RDMA_WRITE,
        count: COUNT,
        size: SIZE,
        local: { key: source.mr.lkey, iova: IOVA },
        remote: { key: target.mr.rkey, iova: IOVA },
        depth: 32,
      });
      return { y, x, source, target, a, b, transfer };
    }

    function readAll(buffer: HostBuffer): Promise<Buffer> {
      return buffer.cpu.read(0, buffer.size);
    }

    it('peer NIC killed mid-transfer: RETRY_EXC_ERR once, the rest flushed, the QP in ERR, every successful WR landed', async () => {
      const { y, target, a, transfer } = await writerAndTarget();
      const running = transfer.run();
      await transfer.whenCompleted(40);
      await stack.nics[1].process.stop('SIGKILL');
      await running;
      await transfer.settled(10_000);
      transfer.close();
      const { succeeded } = expectRcErrorShape(transfer, WC_STATUS_RETRY_EXC_ERR, 40);
      expect((await y.ctx.queryQp(a.qpNum)).qpState).to.equal(rdma.QpState.QP_STATE_ERR);
      expectLanded(await readAll(target), succeeded);
    });

    it('peer NIC frozen mid-transfer: RETRY_EXC_ERR, and once it thaws no WR completes twice', async () => {
      const { y, target, a, transfer } = await writerAndTarget();
      const running = transfer.run();
      await transfer.whenCompleted(40);
      const nic = stack.nics[1].process.child;
      nic.kill('SIGSTOP');
      try {
        await running;
        await transfer.settled(10_000);
      } finally {
        nic.kill('SIGCONT');
      }
      await sleep(500);
      transfer.close();
      const { succeeded } = expectRcErrorShape(transfer, WC_STATUS_RETRY_EXC_ERR, 40);
      expect((await y.ctx.queryQp(a.qpNum)).qpState).to.equal(rdma.QpState.QP_STATE_ERR);
      expectLanded(await readAll(target), succeeded);
    });

    it('link partitioned mid-transfer: RETRY_EXC_ERR; healed, a new connection moves bytes again', async function () {
      const unavailable = partitionUnavailable();
      if (unavailable !== undefined) {
        console.warn(`      link partition test skipped: ${unavailable}`);
        this.skip();
      }
      const { y, x, source, target, transfer } = await writerAndTarget();
      const running = transfer.run();
      await transfer.whenCompleted(40);
      const cut = partition(stack.wirePort);
      try {
        await running;
        await transfer.settled(15_000);
      } finally {
        cut();
      }
      transfer.close();
      const { succeeded } = expectRcErrorShape(transfer, WC_STATUS_RETRY_EXC_ERR, 40);
      expectLanded(await readAll(target), succeeded);

      const a = await y.rcQp();
      const b = await x.rcQp();
      await y.ctx.connectRc(a.qpNum, { gid: x.gid, qpNum: b.qpNum }, { access: ACCESS, timeout: 14, retryCnt: 7 });
      await x.ctx.connectRc(b.qpNum, { gid: y.gid, qpNum: a.qpNum }, { access: ACCESS });
      await target.cpu.copyFromBuffer(0, Buffer.alloc(COUNT * SIZE));
      const again = new Transfer({
        host: y,
        qpNum: a.qpNum,
        cq: a.cq,
        opcode: rdma.WrOpcode.WR_OPCODE_RDMA_WRITE,
        count: 16,
        size: SIZE,
        local: { key: source.mr.lkey, iova: IOVA },
        remote: { key: target.mr.rkey, iova: IOVA },
      });
      await again.run();
      await again.settled(10_000);
      again.close();
      expect(again.byStatus(WC_STATUS_SUCCESS)).to.have.length(16);
      expectLanded(await readAll(target), again.byStatus(WC_STATUS_SUCCESS));
    });

    /** PCI_COMMAND with MEMORY cleared: vfio-pci revokes accel0's dma-bufs and returns once every importer stopped. */
    async function revokeBar(x: RdmaHost, bar: BarBuffer): Promise<void> {
      const vfioClient = new vfio.VfioPciServiceClient(stack.vfioPci.address, credentials.createInsecure(), { interceptors: [x.session.interceptor] });
      const command = Buffer.alloc(2);
      command.writeUInt16LE(PCI_COMMAND_MASTER);
      await rpc((cb) => vfioClient.regionWrite({ pid: x.session.pid, deviceFd: bar.deviceFd, index: CONFIG_REGION, offset: BigInt(PCI_COMMAND), data: command }, cb));
      vfioClient.close();
    }

    /**
     * Runs `transfer`, revokes accel0's BAR (through host X, its owner) once 40
     * WRs completed, and checks what the revoke promises: `landing` (the memory
     * the transfer writes) is the same from the revoke's return on, every WR
     * completed once in the RC error shape with `error`, and each successful
     * one landed. `grant`: nic0 held a grant of the BAR before, none after.
     */
    async function revokeMidTransfer(transfer: Transfer, x: RdmaHost, bar: BarBuffer, landing: () => Promise<Buffer>, error: number, grant: boolean): Promise<void> {
      const running = transfer.run();
      await transfer.whenCompleted(40);
      if (grant) expect(await grantsOfBar(stack, 0), "nic0's grants of accel0's BAR before the revoke").to.equal(1);
      await revokeBar(x, bar);
      const atRevoke = await landing();
      await running;
      await transfer.settled(10_000);
      transfer.close();
      await sleep(200);
      expect((await landing()).equals(atRevoke), 'bytes landed after the revoke returned').to.equal(true);
      if (grant) expect(await grantsOfBar(stack, 0), "nic0's grants of accel0's BAR after the revoke").to.equal(0);
      const { succeeded } = expectRcErrorShape(transfer, error, 40);
      expectLanded(atRevoke, succeeded);
    }

    it('accel0 BAR revoked mid-transfer: WRs that had not finished complete in error; no byte lands after the revoke returns', async () => {
      const { x, target: bar, transfer } = await writerIntoBar();
      await revokeMidTransfer(transfer, x, bar, () => barBytes(stack, COUNT * SIZE), WC_STATUS_REM_ACCESS_ERR, false);
    });

    it('accel0 BAR revoked under one-copy READs into it: the peer NIC writing the BAR through its grant stops before the revoke returns; LOC_PROT_ERR, the rest flushed', async () => {
      // Host X (nic1, beside accel0) READs host Y's memory into its BAR: nic0 answers by copying straight into the BAR, which
      // nic1 granted it; the revoke reaches both NICs' attachments.
      const y = await stack.host(0, 'host-y', queues);
      const x = await stack.host(1, 'host-x', queues);
      hosts.push(y, x);
      const source = await y.hostBuffer(COUNT * SIZE, IOVA, ACCESS);
      await source.cpu.copyFromBuffer(0, patterned(COUNT, SIZE));
      const bar = await x.barBuffer(stack.vfioPci.address, 0, COUNT * SIZE, IOVA, ACCESS);
      const { transfer } = await transferBetween(x, y, QUICK_RETRY, {
        opcode: rdma.WrOpcode.WR_OPCODE_RDMA_READ,
        count: COUNT,
        size: SIZE,
        local: { key: bar.mr.lkey, iova: IOVA },
        remote: { key: source.mr.rkey, iova: IOVA },
        depth: 16,
      });
      await revokeMidTransfer(transfer, x, bar, () => barBytes(stack, COUNT * SIZE), WC_STATUS_LOC_PROT_ERR, true);
    });

    it('accel0 BAR revoked under one-copy WRITEs from it: the peer NIC reading the BAR through its grant stops before the revoke returns; LOC_PROT_ERR, the rest flushed', async () => {
      // Host X (nic1) WRITEs from its BAR into host Y's memory: nic0 copies straight out of the BAR, which nic1 granted it.
      const y = await stack.host(0, 'host-y', queues);
      const x = await stack.host(1, 'host-x', queues);
      hosts.push(y, x);
      const target = await y.hostBuffer(COUNT * SIZE, IOVA, ACCESS);
      const bar = await x.barBuffer(stack.vfioPci.address, 0, COUNT * SIZE, IOVA, ACCESS);
      const fill = await y.hostBuffer(COUNT * SIZE, IOVA + COUNT * SIZE, ACCESS);
      await fill.cpu.copyFromBuffer(0, patterned(COUNT, SIZE));
      const { a } = await rcPair(x, y, QUICK_RETRY);
      // The pattern into the BAR first, by RDMA READ from Y.
      const load = new Transfer({ host: x, qpNum: a.qpNum, cq: a.cq, opcode: rdma.WrOpcode.WR_OPCODE_RDMA_READ, count: COUNT, size: SIZE, local: { key: bar.mr.lkey, iova: IOVA }, remote: { key: fill.mr.rkey, iova: IOVA + COUNT * SIZE }, depth: 16 });
      await load.run();
      await load.settled(10_000);
      load.close();
      expect(load.byStatus(WC_STATUS_SUCCESS)).to.have.length(COUNT);
      const transfer = new Transfer({
        host: x,
        qpNum: a.qpNum,
        cq: a.cq,
        opcode: rdma.WrOpcode.WR_OPCODE_RDMA_WRITE,
        count: COUNT,
        size: SIZE,
        local: { key: bar.mr.lkey, iova: IOVA },
        remote: { key: target.mr.rkey, iova: IOVA },
        depth: 16,
      });
      await revokeMidTransfer(transfer, x, bar, () => target.cpu.read(0, target.size), WC_STATUS_LOC_PROT_ERR, true);
    });

    it('NIC crash: its attachments and registry files go; its old contexts are refused by the restarted NIC; the peer sees RETRY_EXC_ERR', async () => {
      const { y, x, a, transfer } = await writerAndTarget();
      await x.barBuffer(stack.vfioPci.address, 0, MiB, IOVA + COUNT * SIZE, ACCESS);
      const nic = stack.nics[1];
      const owner = `rdma-nic/${nic.bdf}`;
      await nic.process.stop('SIGKILL');

      const observer = await RegistrySession.open(stack.registry.address, {
        name: 'observer',
        shmDir: stack.shmDir,
        privilegedCredential: platformSecretsOf(stack.shmDir).adminToken,
      });
      try {
        const deadline = Date.now() + 5000;
        for (;;) {
          const attachments = (await observer.bufInfo()).flatMap((b) => b.attachments).filter((att) => att.importerBdf === nic.bdf);
          const { processes, owners } = await observer.listProcesses();
          const nicSessions = processes.filter((p) => p.name === owner);
          if (attachments.length === 0 && nicSessions.length === 0 && !owners.includes(owner)) break;
          if (Date.now() > deadline) throw new Error(`after the NIC died: ${attachments.length} attachments, ${nicSessions.length} sessions remain`);
          await sleep(50);
        }
      } finally {
        await observer.close();
      }

      await stack.restartNic(1);
      const stale = await x.ctx.queryDevice().then(
        () => 'answered',
        (error: unknown) => errnoOf(error) ?? 'no errno',
      );
      expect(stale, 'a context of the NIC that died, at its successor').to.equal('EBADF');

      await transfer.run();
      await transfer.settled(10_000);
      transfer.close();
      expectRcErrorShape(transfer, WC_STATUS_RETRY_EXC_ERR, 0);
      expect((await y.ctx.queryQp(a.qpNum)).qpState).to.equal(rdma.QpState.QP_STATE_ERR);
    });
  });
}

/**
 * Attachments to accel0's dma-bufs that NIC `index` holds as a grant: made
 * by its process with the other NIC's BDF (the requester whose memory it
 * is), as the registry lists them to the administrator.
 */
async function grantsOfBar(stack: RdmaStack, index: 0 | 1): Promise<number> {
  const observer = await RegistrySession.open(stack.registry.address, { name: 'observer', shmDir: stack.shmDir, privilegedCredential: platformSecretsOf(stack.shmDir).adminToken });
  try {
    const pids = new Set((await observer.listProcesses()).processes.filter((p) => p.name === `rdma-nic/${stack.nics[index].bdf}`).map((p) => p.pid));
    const other = stack.nics[1 - index]!.bdf;
    return (await observer.bufInfo())
      .filter((buffer) => buffer.providerBdf === ACCEL0)
      .flatMap((buffer) => buffer.attachments)
      .filter((attachment) => pids.has(attachment.importerPid) && attachment.importerBdf === other).length;
  } finally {
    await observer.close();
  }
}

/** accel0 BAR2's first `length` bytes: what the device memory holds, whatever the decode state. */
function barBytes(stack: RdmaStack, length: number): Promise<Buffer> {
  return deviceMemory({ pciEmu: stack.pciEmu.address, adminToken: platformSecretsOf(stack.shmDir).adminToken }, ACCEL0, 2, 0, length);
}

/** Why a link between two NIC addresses cannot be cut here (iptables on loopback, as root), or undefined when it can. */
function partitionUnavailable(): string | undefined {
  if (process.getuid?.() !== 0) return 'cutting a link needs root (iptables)';
  try {
    execFileSync('iptables', ['-L', 'INPUT', '-n'], { stdio: 'ignore' });
    return undefined;
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'ENOENT') return 'iptables missing (apt-get install iptables)';
    return `iptables cannot list INPUT here: ${(error as Error).message.split('\n')[0]}`;
  }
}

/** Drops every packet of the wire port between the NICs' addresses (both directions); returns the heal. */
function partition(wirePort: number): () => void {
  const rules = [
    ['INPUT', '-i', 'lo', '-p', 'tcp', '--dport', String(wirePort), '-j', 'DROP'],
    ['INPUT', '-i', 'lo', '-p', 'tcp', '--sport', String(wirePort), '-j', 'DROP'],
  ];
  for (const rule of rules) execFileSync('iptables', ['-I', ...rule]);
  return () => {
    for (const rule of rules) execFileSync('iptables', ['-D', ...rule]);
  };
}
