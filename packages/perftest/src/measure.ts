import { errno } from '@p2p/errno';
import { rdma } from '@p2p/proto';
import { decodeCqes, encodeWqe, IBV_SEND_SIGNALED, type PostStream, WQE_BYTES } from '@p2p/verbs';
import type { QpConnection } from './connection';
import { type CompletionMark, latencyStats, type LatencyStats, peakRate } from './stats';

const MiB = 2 ** 20;
/** WQEs per post (one PostStream message), the last one signaled: perftest's --cq-mod. */
const MAX_BATCH = 256;
/** WRs outstanding: perftest's --tx-depth (below the requester's maxSendWr)... */
const MAX_TX_DEPTH = 7168;
/** ...and at most this many bytes in flight: less than a link's ring (64 MiB), so payloads never spill inline. */
const MAX_BYTES_IN_FLIGHT = 48 * MiB;

/** How long a run goes: a number of messages per QP (perftest's -n), or a time (-D). */
export type RunLength = { readonly iterations: number } | { readonly seconds: number };

/** One size's run. */
export interface RunPlan {
  readonly opcode: rdma.WrOpcode;
  readonly size: number;
  readonly length: RunLength;
  /** Untimed messages first: a pass through the working set faults in both sides' pages and warms the JIT. */
  readonly warmUp: number;
  /** Each run's progress, 0 to 1. */
  readonly progress?: (fraction: number) => void;
  /** Aborts the run (Ctrl-C): it rejects with ECANCELED. */
  readonly signal?: AbortSignal;
}

/** A bandwidth run's figures (print_report_bw): bytes per second and million messages per second. */
export interface BwResult {
  readonly bytes: number;
  /** Messages per QP. */
  readonly iterations: number;
  readonly qps: number;
  readonly peak: number;
  readonly average: number;
  readonly msgRate: number;
  readonly seconds: number;
}

/** A latency run's figures in microseconds, and its sorted samples. */
export interface LatResult extends LatencyStats {
  readonly bytes: number;
  readonly iterations: number;
  readonly seconds: number;
  readonly samples: readonly number[];
}

/** perftest's tx depth and post list for a size: deep queues for small messages, never more than MAX_BYTES_IN_FLIGHT. */
export function queueDepths(size: number): { txDepth: number; batch: number } {
  const txDepth = Math.max(2, Math.min(MAX_TX_DEPTH, Math.floor(MAX_BYTES_IN_FLIGHT / size)));
  return { txDepth, batch: Math.min(MAX_BATCH, Math.floor(txDepth / 2)) };
}

/**
 * One QP's traffic for one size: posts packed WQEs whose buffers cycle
 * through the connection's regions, and waits on the completion count the
 * connection's watch reports. With user queues the PostStream writes them
 * into the send queue (no call) and the watch polls the CQ ring in this
 * process; through calls both are the NIC's streams.
 */
class Flow {
  readonly #stream: PostStream;
  readonly #slots: number;
  completed = 0;
  #failure: string | undefined;
  #wake: (() => void) | undefined;
  readonly #onAbort = (): void => this.#wake?.();

  constructor(
    readonly connection: QpConnection,
    readonly plan: RunPlan,
    onCompletions: () => void,
  ) {
    this.#slots = Math.max(1, Math.floor(Math.min(connection.local.length, connection.remote.length) / plan.size));
    this.#stream = connection.requester.ctx.openPostStream(connection.qpNum);
    plan.signal?.addEventListener('abort', this.#onAbort);
    const route = connection.completions;
    route.onBatch = (packedCqes) => {
      for (const wc of decodeCqes(packedCqes)) {
        if (wc.status !== rdma.WcStatus.WC_STATUS_SUCCESS) this.#failure ??= `wr ${wc.wrId} completed with status ${wc.status}`;
        this.completed = Number(wc.wrId) + 1;
      }
      this.#failure ??= route.ended;
      onCompletions();
      this.#wake?.();
    };
  }

  /** Messages [first, first + count), the last one signaled. */
  post(first: number, count: number): void {
    const { size, opcode } = this.plan;
    const { local, remote } = this.connection;
    const buffer = Buffer.alloc(count * WQE_BYTES);
    for (let i = 0; i < count; i++) {
      const offset = ((first + i) % this.#slots) * size;
      encodeWqe(buffer, i * WQE_BYTES, {
        wrId: BigInt(first + i),
        opcode,
        sge: { addr: local.iova + offset, length: size, lkey: local.lkey },
        sendFlags: i === count - 1 ? IBV_SEND_SIGNALED : 0,
        remoteAddr: remote.iova + offset,
        rkey: remote.rkey,
      });
    }
    this.#stream.postAndForget(buffer);
  }

  async waitFor(done: number): Promise<void> {
    while (this.completed < done && this.#failure === undefined && this.plan.signal?.aborted !== true) await new Promise<void>((resolve) => (this.#wake = resolve));
    if (this.plan.signal?.aborted === true) throw errno('ECANCELED', 'interrupted');
    if (this.#failure !== undefined) throw errno('EIO', this.#failure);
  }

  close(): void {
    this.connection.completions.onBatch = () => undefined;
    this.plan.signal?.removeEventListener('abort', this.#onAbort);
    this.#stream.close();
  }
}

/** Posts `count` messages from `first` in batches, keeping at most txDepth in flight, while `more()` says so. */
async function stream(flow: Flow, first: number, more: (posted: number) => number): Promise<number> {
  const { txDepth, batch } = queueDepths(flow.plan.size);
  let posted = first;
  for (let count = more(posted); count > 0; count = more(posted)) {
    count = Math.min(batch, count);
    await flow.waitFor(posted + count - txDepth);
    flow.post(posted, count);
    posted += count;
  }
  await flow.waitFor(posted);
  return posted - first;
}

/** How many more messages a run of `length` posts, given how many it has posted and when it started. */
function remaining(length: RunLength, start: bigint): (posted: number) => number {
  if ('iterations' in length) return (posted) => length.iterations - posted;
  const end = start + BigInt(Math.round(length.seconds * 1e9));
  return () => (process.hrtime.bigint() < end ? MAX_BATCH : 0);
}

function fractionDone(length: RunLength, start: bigint, done: number): number {
  return 'iterations' in length ? done / length.iterations : Number(process.hrtime.bigint() - start) / 1e9 / length.seconds;
}

/**
 * ib_write_bw / ib_read_bw for one size: every QP streams at its tx depth
 * at once; the average is all bytes over the whole time, the peak the best
 * tenth of it, the message rate all messages over the time.
 */
export async function runBw(connections: readonly QpConnection[], plan: RunPlan): Promise<BwResult> {
  const marks: CompletionMark[] = [];
  let start = process.hrtime.bigint();
  let timing = false;
  const flows: Flow[] = [];
  const total = (): number => flows.reduce((sum, f) => sum + f.completed, 0);
  const onCompletions = (): void => {
    if (!timing) return;
    const done = total();
    marks.push({ at: process.hrtime.bigint(), done });
    plan.progress?.(fractionDone(plan.length, start, done / flows.length));
  };
  try {
    for (const connection of connections) flows.push(new Flow(connection, plan, onCompletions));
    await Promise.all(flows.map((flow) => stream(flow, 0, (posted) => plan.warmUp - posted)));
    for (const flow of flows) flow.completed = 0;
    start = process.hrtime.bigint();
    timing = true;
    const more = remaining(plan.length, start);
    const posted = await Promise.all(flows.map((flow) => stream(flow, 0, more)));
    const seconds = Number(process.hrtime.bigint() - start) / 1e9;
    const messages = posted.reduce((sum, n) => sum + n, 0);
    const average = (messages * plan.size) / seconds;
    return {
      bytes: plan.size,
      iterations: Math.round(messages / flows.length),
      qps: flows.length,
      peak: Math.max(peakRate(start, marks, plan.size), average),
      average,
      msgRate: messages / seconds / 1e6,
      seconds,
    };
  } finally {
    for (const flow of flows) flow.close();
  }
}

/**
 * ib_write_lat / ib_read_lat for one size: one message in flight, each
 * timed from its post to its completion.
 */
export async function runLat(connection: QpConnection, plan: RunPlan): Promise<LatResult> {
  const flow = new Flow(connection, plan, () => undefined);
  try {
    await stream(flow, 0, (posted) => plan.warmUp - posted);
    flow.completed = 0;
    const samples: number[] = [];
    const start = process.hrtime.bigint();
    const more = remaining(plan.length, start);
    for (let i = 0; more(i) > 0; i++) {
      const t0 = process.hrtime.bigint();
      flow.post(i, 1);
      await flow.waitFor(i + 1);
      samples.push(Number(process.hrtime.bigint() - t0) / 1e3);
      plan.progress?.(fractionDone(plan.length, start, i + 1));
    }
    const seconds = Number(process.hrtime.bigint() - start) / 1e9;
    samples.sort((p, q) => p - q);
    return { bytes: plan.size, iterations: samples.length, seconds, samples, ...latencyStats(samples) };
  } finally {
    flow.close();
  }
}
