import Table from 'cli-table3';
import { BAR_IOVA, type BwResult, HOST_IOVA, type MemoryRegion, PERF_ACCESS, percentile, QpConnection, runBw, runLat } from '@p2p/perftest';
import { rdma } from '@p2p/proto';
import { SegmentStore } from '@p2p/shm';
import type { HostMr } from '@p2p/verbs';
import { type RdmaHost, RdmaStack } from '../harness/rdma-hosts';
import { startSink, streamRate } from './grpc-sink';
import { cyclingCopyRate, GB } from './stats';

const KiB = 1024;
const MiB = 1024 * KiB;
/** Every buffer: messages cycle through it, so large transfers stream through memory rather than one cache-hot spot. */
const WORKING_SET = 64 * MiB;
const SIZES = [4 * KiB, 64 * KiB, MiB, 8 * MiB];

/**
 * rdma-nic figures as perftest prints them (ib_write_bw / ib_read_bw, then
 * the latency of one message at a time), for host memory to host memory
 * and for accel0's BAR to the other host's memory, with every service its
 * own process. Beside them, measured in the same run: a single-thread
 * memcpy of the same sizes through the same working set, and a gRPC byte
 * stream between two processes.
 */
export async function benchRdma(out: string[]): Promise<void> {
  const stack = await RdmaStack.start();
  const hosts: RdmaHost[] = [];
  const sink = await startSink();
  try {
    const hostY = await stack.host(0, 'host-y');
    hosts.push(hostY);
    const hostX = await stack.host(1, 'host-x');
    hosts.push(hostX);
    const y = await hostY.hostBuffer(WORKING_SET, HOST_IOVA, PERF_ACCESS);
    const x = await hostX.hostBuffer(WORKING_SET, HOST_IOVA, PERF_ACCESS);
    const bar = await hostX.barBuffer(stack.vfioPci.address, 0, WORKING_SET, BAR_IOVA, PERF_ACCESS);

    // Two memcpy baselines: between heap buffers, and between two mapped tmpfs segments, the memory
    // every copy of the data path is made between (host buffers, BAR segments, rings).
    const memcpy = new Map<number, number>();
    const mappedMemcpy = new Map<number, number>();
    const heap = [Buffer.alloc(WORKING_SET, 0xa5), Buffer.alloc(WORKING_SET)] as const;
    const store = new SegmentStore({ dir: stack.shmDir });
    const segments = [store.create('bench-memcpy-a', WORKING_SET), store.create('bench-memcpy-b', WORKING_SET)];
    const mapped = segments.map((segment) => segment.view(0, WORKING_SET));
    mapped[0]!.fill(0xa5);
    mapped[1]!.fill(0);
    for (const size of SIZES) {
      memcpy.set(size, cyclingCopyRate(heap[0], heap[1], size, WORKING_SET));
      mappedMemcpy.set(size, cyclingCopyRate(mapped[0]!, mapped[1]!, size, WORKING_SET));
    }
    for (const segment of segments) segment.close();
    const grpc1M = await streamRate(sink.address, MiB, 256 * MiB);
    const grpc4K = await streamRate(sink.address, 4 * KiB, 32 * MiB);

    const cases: { title: string; opcode: rdma.WrOpcode; requester: RdmaHost; responder: RdmaHost; local: MemoryRegion; remote: MemoryRegion }[] = [
      { title: 'RDMA_WRITE host -> remote host (nic0 -> nic1)', opcode: rdma.WrOpcode.WR_OPCODE_RDMA_WRITE, requester: hostY, responder: hostX, local: region(y), remote: region(x) },
      { title: 'RDMA_READ remote host -> host (nic0 <- nic1)', opcode: rdma.WrOpcode.WR_OPCODE_RDMA_READ, requester: hostY, responder: hostX, local: region(y), remote: region(x) },
      { title: 'RDMA_WRITE accel0 BAR -> remote host (nic1 -> nic0)', opcode: rdma.WrOpcode.WR_OPCODE_RDMA_WRITE, requester: hostX, responder: hostY, local: region(bar), remote: region(y) },
      { title: 'RDMA_READ accel0 BAR -> remote host (nic0 <- nic1)', opcode: rdma.WrOpcode.WR_OPCODE_RDMA_READ, requester: hostY, responder: hostX, local: region(y), remote: region(bar) },
    ];
    const ratios: string[] = [];
    for (const test of cases) {
      const connection = await QpConnection.connect(test.requester, test.responder, test.local, test.remote);
      const table = new Table({
        head: ['#bytes', '#iterations', 'BW peak[GB/s]', 'BW average[GB/s]', 'MsgRate[Mpps]', 't_typical[us]', 't_99[us]', 't_99.9[us]', 'vs memcpy'],
        style: { head: [], border: [] },
      });
      for (const size of SIZES) {
        const point = await measure(connection, test.opcode, size).catch((error: unknown) => {
          throw new Error(`${test.title}, ${size} bytes: ${error instanceof Error ? error.message : String(error)}`);
        });
        const base = memcpy.get(size)!;
        table.push([
          size,
          point.iterations,
          (point.peak / GB).toFixed(2),
          (point.average / GB).toFixed(2),
          point.msgRate.toFixed(3),
          percentile(point.latencies, 50).toFixed(0),
          percentile(point.latencies, 99).toFixed(0),
          percentile(point.latencies, 99.9).toFixed(0),
          `${(point.average / base).toFixed(2)}x`,
        ]);
        if (size === MiB) {
          const mappedBase = mappedMemcpy.get(size)!;
          ratios.push(
            `${test.title}, 1 MiB: ${(point.average / base).toFixed(2)}x heap memcpy, ${(point.average / mappedBase).toFixed(2)}x mapped-segment memcpy, ${(point.average / grpc1M).toFixed(0)}x the gRPC stream`,
          );
        }
        if (size === 4 * KiB && test.opcode === rdma.WrOpcode.WR_OPCODE_RDMA_WRITE) ratios.push(`${test.title}, 4 KiB: ${(point.msgRate * 1e3).toFixed(0)} k msg/s`);
      }
      await connection.close();
      out.push(`${test.title}\n${table.toString()}`);
    }
    const baselines = new Table({ head: ['baseline (same run)', ...SIZES.map(String)], style: { head: [], border: [] } });
    baselines.push(['memcpy heap -> heap, one thread [GB/s]', ...SIZES.map((s) => (memcpy.get(s)! / GB).toFixed(2))]);
    baselines.push(['memcpy mapped segment -> segment [GB/s]', ...SIZES.map((s) => (mappedMemcpy.get(s)! / GB).toFixed(2))]);
    baselines.push(['gRPC byte stream [GB/s]', (grpc4K / GB).toFixed(3), '', (grpc1M / GB).toFixed(3), '']);
    out.push(baselines.toString());
    out.push(...ratios);
  } finally {
    sink.stop();
    for (const host of hosts) await host.close().catch(() => undefined);
    await stack.stop();
  }
}

function region(buffer: { mr: HostMr; iova: number; size: number }): MemoryRegion {
  return { lkey: buffer.mr.lkey, rkey: buffer.mr.rkey, iova: buffer.iova, length: buffer.size };
}

/**
 * The bandwidth run (perftest's tx depth in flight, packed posts) and then
 * the latency run (one in flight) for one size, on the same connection.
 */
async function measure(connection: QpConnection, opcode: rdma.WrOpcode, size: number): Promise<BwResult & { latencies: readonly number[] }> {
  const iterations = size <= 4 * KiB ? 200_000 : Math.max(256, Math.min(20_000, (1024 * MiB) / size));
  // Warm up: a pass through the working set faults in both sides' pages, and at least half the run's
  // messages get the JIT to its steady state before anything is timed.
  const warmUp = Math.max(WORKING_SET / size, iterations / 2);
  const bw = await runBw([connection], { opcode, size, length: { iterations }, warmUp });
  const samples = Math.min(1000, Math.max(100, iterations / 20));
  const lat = await runLat(connection, { opcode, size, length: { iterations: samples }, warmUp: 0 });
  return { ...bw, latencies: lat.samples };
}
