import Table from 'cli-table3';
import { HOST_IOVA, type MemoryRegion, PERF_ACCESS, percentile, QpConnection, runBw, runLat } from '@p2p/perftest';
import { rdma } from '@p2p/proto';
import type { HostMr, QueueMode } from '@p2p/verbs';
import { type RdmaHost, RdmaStack } from '../harness/rdma-hosts';
import { cyclingCopyRate, GB } from './stats';

const KiB = 1024;
const MiB = 1024 * KiB;
const WORKING_SET = 64 * MiB;

interface PathFigures {
  readonly msgRate4K: number;
  readonly lat4K: readonly number[];
  readonly bw1M: number;
}

/**
 * The two post paths side by side, host memory to remote host memory with
 * RDMA WRITE: queues in the process's memory (doorbells, CQ ring polled in
 * the process) against PostStream and WatchCompletions (one gRPC message
 * per post batch and per completion batch). 4 KiB message rate at
 * perftest's depth, 4 KiB latency of one message at a time, 1 MiB
 * bandwidth; beside a one-thread memcpy of the same run.
 */
export async function benchPostPaths(out: string[]): Promise<void> {
  const stack = await RdmaStack.start();
  const hosts: RdmaHost[] = [];
  try {
    const figures = new Map<QueueMode, PathFigures>();
    for (const mode of ['calls', 'user'] as const) {
      const y = await stack.host(0, `host-y-${mode}`, mode);
      hosts.push(y);
      const x = await stack.host(1, `host-x-${mode}`, mode);
      hosts.push(x);
      const yBuf = await y.hostBuffer(WORKING_SET, HOST_IOVA, PERF_ACCESS);
      const xBuf = await x.hostBuffer(WORKING_SET, HOST_IOVA, PERF_ACCESS);
      const connection = await QpConnection.connect(y, x, region(yBuf), region(xBuf));
      const write = rdma.WrOpcode.WR_OPCODE_RDMA_WRITE;
      const bw4K = await runBw([connection], { opcode: write, size: 4 * KiB, length: { iterations: 200_000 }, warmUp: 100_000 });
      const lat = await runLat(connection, { opcode: write, size: 4 * KiB, length: { iterations: 2000 }, warmUp: 2000 });
      const bw1M = await runBw([connection], { opcode: write, size: MiB, length: { iterations: 2000 }, warmUp: 256 });
      figures.set(mode, { msgRate4K: bw4K.msgRate * 1e6, lat4K: lat.samples, bw1M: bw1M.average });
      await connection.close();
    }
    const heap = [Buffer.alloc(WORKING_SET, 0xa5), Buffer.alloc(WORKING_SET)] as const;
    const memcpy1M = cyclingCopyRate(heap[0], heap[1], MiB, WORKING_SET);
    const table = new Table({
      head: ['RDMA_WRITE host -> remote host', '4 KiB msg/s', '4 KiB lat typical [us]', 't_99 [us]', 't_99.9 [us]', '1 MiB [GB/s]', '1 MiB vs memcpy'],
      style: { head: [], border: [] },
    });
    for (const [mode, f] of figures) {
      table.push([
        mode === 'user' ? 'user queues (doorbells, CQ ring)' : 'calls (PostStream, WatchCompletions)',
        Math.round(f.msgRate4K).toLocaleString('en-US'),
        percentile(f.lat4K, 50).toFixed(1),
        percentile(f.lat4K, 99).toFixed(1),
        percentile(f.lat4K, 99.9).toFixed(1),
        (f.bw1M / GB).toFixed(2),
        `${(f.bw1M / memcpy1M).toFixed(2)}x`,
      ]);
    }
    const user = figures.get('user')!;
    const calls = figures.get('calls')!;
    out.push(`post paths (same run; memcpy heap -> heap 1 MiB: ${(memcpy1M / GB).toFixed(2)} GB/s)\n${table.toString()}`);
    out.push(
      `user queues vs calls: 4 KiB message rate ${(user.msgRate4K / calls.msgRate4K).toFixed(2)}x, 4 KiB typical latency ${(percentile(user.lat4K, 50) / percentile(calls.lat4K, 50)).toFixed(2)}x, 1 MiB bandwidth ${(user.bw1M / calls.bw1M).toFixed(2)}x`,
    );
  } finally {
    for (const host of hosts) await host.close().catch(() => undefined);
    await stack.stop();
  }
}

function region(buffer: { mr: HostMr; iova: number; size: number }): MemoryRegion {
  return { lkey: buffer.mr.lkey, rkey: buffer.mr.rkey, iova: buffer.iova, length: buffer.size };
}
