import Table from 'cli-table3';
import { rdma } from '@p2p/proto';
import {
  encodeWqe,
  IBV_ACCESS_LOCAL_WRITE,
  IBV_ACCESS_REMOTE_READ,
  IBV_ACCESS_REMOTE_WRITE,
  IBV_SEND_SIGNALED,
  decodeCqes,
  WQE_BYTES,
} from '@p2p/verbs';
import { SegmentStore } from '@p2p/shm';
import { type RdmaHost, RdmaStack } from '../harness/rdma-hosts';
import { startSink, streamRate } from './grpc-sink';
import { cyclingCopyRate, GB, percentile } from './stats';

const KiB = 1024;
const MiB = 1024 * KiB;
/** Every buffer: messages cycle through it, so large transfers stream through memory rather than one cache-hot spot. */
const WORKING_SET = 64 * MiB;
const SIZES = [4 * KiB, 64 * KiB, MiB, 8 * MiB];
const ACCESS = IBV_ACCESS_LOCAL_WRITE | IBV_ACCESS_REMOTE_WRITE | IBV_ACCESS_REMOTE_READ;
/** WQEs per post (one PostStream message), the last one signaled: perftest's --cq-mod. */
const MAX_BATCH = 256;
/** WRs outstanding: perftest's --tx-depth... */
const MAX_TX_DEPTH = 7168;
/** ...and at most this many bytes in flight: less than a link's ring (64 MiB), so payloads never spill inline. */
const MAX_BYTES_IN_FLIGHT = 48 * MiB;
const HOST_IOVA = 0x1_0000_0000;
const BAR_IOVA = 0x2_0000_0000;

interface Point {
  readonly bytes: number;
  readonly iterations: number;
  readonly peak: number;
  readonly average: number;
  readonly mpps: number;
  readonly latencies: number[];
}

/** One QP connection for a test: the requester's side posts, the responder's side only answers. */
interface Connection {
  readonly requester: RdmaHost;
  readonly qpNum: number;
  readonly cq: number;
  readonly localKey: number;
  readonly localIova: number;
  readonly remoteKey: number;
  readonly remoteIova: number;
  /**
   * The CQ's one watcher (a CQ takes one: EBUSY for a second, and a cancel
   * reaches the NIC only some time after the client sends it), opened once
   * for the connection; each measure() routes its batches here.
   */
  readonly completions: CompletionRoute;
}

interface CompletionRoute {
  onBatch: (packedCqes: Uint8Array) => void;
  /** Why the watch ended, if it did. */
  ended: string | undefined;
  stop(): void;
}

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
    const y = await hostY.hostBuffer(WORKING_SET, HOST_IOVA, ACCESS);
    const x = await hostX.hostBuffer(WORKING_SET, HOST_IOVA, ACCESS);
    const bar = await hostX.barBuffer(stack.vfioPci.address, 0, WORKING_SET, BAR_IOVA, ACCESS);

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

    const cases: { title: string; opcode: number; requester: RdmaHost; responder: RdmaHost; local: { key: number; iova: number }; remote: { key: number; iova: number } }[] = [
      { title: 'RDMA_WRITE host -> remote host (nic0 -> nic1)', opcode: rdma.WrOpcode.WR_OPCODE_RDMA_WRITE, requester: hostY, responder: hostX, local: key(y), remote: key(x) },
      { title: 'RDMA_READ remote host -> host (nic0 <- nic1)', opcode: rdma.WrOpcode.WR_OPCODE_RDMA_READ, requester: hostY, responder: hostX, local: key(y), remote: key(x) },
      { title: 'RDMA_WRITE accel0 BAR -> remote host (nic1 -> nic0)', opcode: rdma.WrOpcode.WR_OPCODE_RDMA_WRITE, requester: hostX, responder: hostY, local: key(bar), remote: key(y) },
      { title: 'RDMA_READ accel0 BAR -> remote host (nic0 <- nic1)', opcode: rdma.WrOpcode.WR_OPCODE_RDMA_READ, requester: hostY, responder: hostX, local: key(y), remote: key(bar) },
    ];
    const ratios: string[] = [];
    for (const test of cases) {
      const connection = await connect(test.requester, test.responder, test.local, test.remote);
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
          point.mpps.toFixed(3),
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
        if (size === 4 * KiB && test.opcode === rdma.WrOpcode.WR_OPCODE_RDMA_WRITE) ratios.push(`${test.title}, 4 KiB: ${(point.mpps * 1e3).toFixed(0)} k msg/s`);
      }
      connection.completions.stop();
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

function key(buffer: { mr: { lkey: number }; iova: number }): { key: number; iova: number } {
  return { key: buffer.mr.lkey, iova: buffer.iova };
}

async function connect(requester: RdmaHost, responder: RdmaHost, local: { key: number; iova: number }, remote: { key: number; iova: number }): Promise<Connection> {
  const a = await requester.rcQp({ maxSendWr: 8192, cqe: 65535 });
  const b = await responder.rcQp();
  await requester.ctx.connectRc(a.qpNum, { gid: responder.gid, qpNum: b.qpNum }, { access: ACCESS });
  await responder.ctx.connectRc(b.qpNum, { gid: requester.gid, qpNum: a.qpNum }, { access: ACCESS });
  const completions: CompletionRoute = { onBatch: () => undefined, ended: undefined, stop: () => undefined };
  completions.stop = requester.ctx.watchCompletions(
    a.cq,
    true,
    (batch) => completions.onBatch(batch.packedCqes),
    (error) => {
      completions.ended = `the completion watch ended${error ? `: ${error.message}` : ''}`;
      completions.onBatch(new Uint8Array(0));
    },
  );
  return { requester, qpNum: a.qpNum, cq: a.cq, localKey: local.key, localIova: local.iova, remoteKey: remote.key, remoteIova: remote.iova, completions };
}

/** The bandwidth run (TX_DEPTH in flight, BATCH per post) and the latency run (one in flight) for one size. */
async function measure(c: Connection, opcode: number, size: number): Promise<Point> {
  const TX_DEPTH = Math.max(2, Math.min(MAX_TX_DEPTH, MAX_BYTES_IN_FLIGHT / size));
  const BATCH = Math.min(MAX_BATCH, TX_DEPTH / 2);
  const iterations = size <= 4 * KiB ? 200_000 : Math.max(256, Math.min(20_000, (1024 * MiB) / size));
  const slots = WORKING_SET / size;
  const wqes = (first: number, count: number, signalLast: boolean): Buffer => {
    const buffer = Buffer.alloc(count * WQE_BYTES);
    for (let i = 0; i < count; i++) {
      const offset = ((first + i) % slots) * size;
      encodeWqe(buffer, i * WQE_BYTES, {
        wrId: BigInt(first + i),
        opcode,
        sge: { addr: c.localIova + offset, length: size, lkey: c.localKey },
        sendFlags: signalLast && i === count - 1 ? IBV_SEND_SIGNALED : 0,
        remoteAddr: c.remoteIova + offset,
        rkey: c.remoteKey,
      });
    }
    return buffer;
  };
  const stream = c.requester.ctx.openPostStream(c.qpNum);
  let completed = 0;
  let failure: string | undefined;
  let wake: (() => void) | undefined;
  const marks: { at: bigint; done: number }[] = [];
  c.completions.onBatch = (packedCqes) => {
    for (const wc of decodeCqes(packedCqes)) {
      if (wc.status !== rdma.WcStatus.WC_STATUS_SUCCESS) failure ??= `wr ${wc.wrId} completed with status ${wc.status}`;
      completed = Number(wc.wrId) + 1;
    }
    failure ??= c.completions.ended;
    marks.push({ at: process.hrtime.bigint(), done: completed });
    wake?.();
  };
  const waitFor = async (done: number): Promise<void> => {
    while (completed < done && failure === undefined) await new Promise<void>((resolve) => (wake = resolve));
    if (failure !== undefined) throw new Error(failure);
  };
  try {
    // Warm up: a pass through the working set faults in both sides' pages, and at least half the run's
    // messages get the JIT to its steady state before anything is timed.
    const warmUp = Math.max(slots, iterations / 2);
    for (let posted = 0; posted < warmUp; posted += Math.min(BATCH, warmUp - posted)) {
      const count = Math.min(BATCH, warmUp - posted);
      await waitFor(posted + count - TX_DEPTH);
      stream.postAndForget(wqes(posted, count, true));
    }
    await waitFor(warmUp);
    completed = 0;
    marks.length = 0;

    const start = process.hrtime.bigint();
    for (let posted = 0; posted < iterations; posted += BATCH) {
      const count = Math.min(BATCH, iterations - posted);
      await waitFor(posted + count - TX_DEPTH);
      stream.postAndForget(wqes(posted, count, true));
    }
    await waitFor(iterations);
    const seconds = Number(process.hrtime.bigint() - start) / 1e9;
    const average = (iterations * size) / seconds;
    const peak = peakRate(start, marks, size);

    const latencies: number[] = [];
    const samples = Math.min(1000, Math.max(100, iterations / 20));
    completed = 0;
    for (let i = 0; i < samples; i++) {
      const t0 = process.hrtime.bigint();
      stream.postAndForget(wqes(i, 1, true));
      await waitFor(i + 1);
      latencies.push(Number(process.hrtime.bigint() - t0) / 1e3);
    }
    latencies.sort((p, q) => p - q);
    return { bytes: size, iterations, peak: Math.max(peak, average), average, mpps: iterations / seconds / 1e6, latencies };
  } finally {
    c.completions.onBatch = () => undefined;
    stream.close();
  }
}

/** The best rate over any tenth of the run (perftest's peak is over its fastest stretch). */
function peakRate(start: bigint, marks: readonly { at: bigint; done: number }[], size: number): number {
  const total = marks.at(-1)?.done ?? 0;
  let best = 0;
  let from = { at: start, done: 0 };
  for (const mark of marks) {
    if (mark.done - from.done >= total / 10) {
      best = Math.max(best, ((mark.done - from.done) * size) / (Number(mark.at - from.at) / 1e9));
      from = mark;
    }
  }
  return best;
}
