/**
 * The peer's side of the cross-host fault test, run beside the hosts (a
 * container on their overlay network, on neither host's tmpfs): streams
 * RDMA WRITEs from host A's memory into host B's on one RC QP, without end,
 * until the QP fails; the test kills host B meanwhile. Then, once host B
 * answers again, a new QP to it moves a transfer's worth of bytes.
 *
 * Env: HOST_A_REGISTRY_ADDRESS, HOST_A_NIC_ADDRESS, HOST_B_REGISTRY_ADDRESS,
 * HOST_B_NIC_ADDRESS. Stdout: one JSON object a line, in order:
 *   {"event":"streaming","completed":n}    under way: kill host B now
 *   {"event":"failed",...}                 how the stream's WRs completed
 *   {"event":"again",...}                  the transfer on a new QP to host B back
 */
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { rdma } from '@p2p/proto';
import { RdmaHost } from '../../harness/rdma-hosts';
import { notLanded, patterned, tallyCompletions, transferBetween, WC_STATUS_SUCCESS, wcStatusName, QUICK_RETRY, TRANSFER_ACCESS as ACCESS, TRANSFER_IOVA as IOVA } from '../../harness/rdma-transfer';

const SIZE = 64 * 1024;
/** 2 MiB a buffer: one CpuRead (gRPC messages stop at 4 MiB) reads it back. */
const SLOTS = 32;
/** How long host B may take to come back (swarm restarts its tasks, they start and find each other). */
const HOST_BACK_MS = 150_000;

function env(name: string): string {
  const value = process.env[name];
  if (value === undefined || value === '') throw new Error(`${name} is not set`);
  return value;
}

function emit(event: string, fields: Record<string, unknown> = {}): void {
  console.log(JSON.stringify({ event, ...fields }));
}

/** SLOTS * SIZE bytes of the host's memory (a system-heap dma-buf), registered on its NIC. */
async function memory(host: RdmaHost): Promise<{ fd: number; lkey: number; rkey: number }> {
  const { fd } = await host.session.heapAllocate(SLOTS * SIZE);
  const mr = await host.ctx.regMr(host.pd, { heapFd: fd, offset: 0, length: SLOTS * SIZE, iova: IOVA, access: ACCESS });
  return { fd, lkey: mr.lkey, rkey: mr.rkey };
}

/** Host B's registry and NIC, again and again until they answer: it is being restarted. */
async function whenBack(ownDir: string): Promise<{ host: RdmaHost; target: { fd: number; lkey: number; rkey: number } }> {
  const deadline = Date.now() + HOST_BACK_MS;
  for (;;) {
    let host: RdmaHost | undefined;
    try {
      host = await RdmaHost.open('fault-b-again', env('HOST_B_REGISTRY_ADDRESS'), env('HOST_B_NIC_ADDRESS'), ownDir);
      return { host, target: await memory(host) };
    } catch (error) {
      await host?.close().catch(() => undefined);
      if (Date.now() > deadline) throw new Error(`host B not back within ${HOST_BACK_MS} ms: ${String(error)}`);
      await new Promise((resolve) => setTimeout(resolve, 1000));
    }
  }
}

async function main(): Promise<void> {
  const ownDir = fs.mkdtempSync(path.join(os.tmpdir(), 'cross-host-fault-'));
  const a = await RdmaHost.open('fault-a', env('HOST_A_REGISTRY_ADDRESS'), env('HOST_A_NIC_ADDRESS'), ownDir);
  const source = await memory(a);
  await a.session.cpuWrite(source.fd, 0, patterned(SLOTS, SIZE));
  const b = await RdmaHost.open('fault-b', env('HOST_B_REGISTRY_ADDRESS'), env('HOST_B_NIC_ADDRESS'), ownDir);
  const target = await memory(b);
  const stream = await transferBetween(a, b, QUICK_RETRY, {
    opcode: rdma.WrOpcode.WR_OPCODE_RDMA_WRITE,
    count: Number.MAX_SAFE_INTEGER,
    slots: SLOTS,
    size: SIZE,
    local: { key: source.lkey, iova: IOVA },
    remote: { key: target.rkey, iova: IOVA },
    depth: 16,
  });
  const running = stream.transfer.run();
  await stream.transfer.whenCompleted(2 * SLOTS);
  emit('streaming', { completed: stream.transfer.completions.size });

  // Posting stops at the first error: the QP is in ERR, every later WR would only be flushed.
  await stream.transfer.whenFailed(HOST_BACK_MS);
  stream.transfer.stop();
  await running;
  await stream.transfer.settled(20_000);
  stream.transfer.close();
  const tally = tallyCompletions(stream.transfer);
  const { qpState } = await a.ctx.queryQp(stream.a.qpNum);
  emit('failed', {
    posted: tally.posted,
    everyOnce: tally.everyOnce,
    inPostOrder: tally.inPostOrder,
    succeeded: tally.succeeded.length,
    failed: tally.failed.map((f) => wcStatusName(f.status)),
    flushed: tally.flushed.length,
    qpState: rdma.QpState[qpState],
  });
  await b.close().catch(() => undefined);

  const back = await whenBack(ownDir);
  const again = await transferBetween(a, back.host, QUICK_RETRY, {
    opcode: rdma.WrOpcode.WR_OPCODE_RDMA_WRITE,
    count: SLOTS,
    size: SIZE,
    local: { key: source.lkey, iova: IOVA },
    remote: { key: back.target.rkey, iova: IOVA },
    depth: 16,
  });
  await again.transfer.run();
  await again.transfer.settled(20_000);
  again.transfer.close();
  const succeeded = again.transfer.byStatus(WC_STATUS_SUCCESS);
  const landed = await back.host.session.cpuRead(back.target.fd, 0, SLOTS * SIZE);
  emit('again', { posted: again.transfer.posted, succeeded: succeeded.length, notLanded: notLanded(landed, succeeded, SIZE) });

  await back.host.close();
  await a.close();
  fs.rmSync(ownDir, { recursive: true, force: true });
}

main().then(
  () => process.exit(0),
  (error: unknown) => {
    console.error(error);
    process.exit(1);
  },
);
