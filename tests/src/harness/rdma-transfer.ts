import { rdma } from '@p2p/proto';
import { decodeCqes, encodeWqe, IBV_ACCESS_LOCAL_WRITE, IBV_ACCESS_REMOTE_READ, IBV_ACCESS_REMOTE_WRITE, IBV_SEND_SIGNALED, type RcOptions, WQE_BYTES } from '@p2p/verbs';
import type { RdmaHost } from './rdma-hosts';

/** What the transfer tests register their buffers with: local write, remote write and remote read. */
export const TRANSFER_ACCESS = IBV_ACCESS_LOCAL_WRITE | IBV_ACCESS_REMOTE_WRITE | IBV_ACCESS_REMOTE_READ;
/** Where the transfer tests put their buffers in the MRs' address space. */
export const TRANSFER_IOVA = 0x1_0000_0000;
/** timeout 14 is 67 ms (perftest's default); with retry_cnt 3 a dead peer is declared in about 270 ms. */
export const QUICK_RETRY = { timeout: 14, retryCnt: 3, access: TRANSFER_ACCESS };

/** Where the WRs of a transfer read and write: WR i covers [i * size, (i + 1) * size) of both. */
export interface TransferPlan {
  readonly host: RdmaHost;
  readonly qpNum: number;
  readonly cq: number;
  readonly opcode: number;
  readonly count: number;
  readonly size: number;
  readonly local: { readonly key: number; readonly iova: number };
  readonly remote: { readonly key: number; readonly iova: number };
  /** WRs outstanding at most; default 64. */
  readonly depth?: number;
  /** WR n uses slot n % slots of both buffers instead; a stream longer than its buffers (default: one slot per WR). */
  readonly slots?: number;
}

/** An RC QP on each host, connected to each other with `options`: the requester's (`a`) and the responder's (`b`). */
export async function rcPair(requester: RdmaHost, responder: RdmaHost, options: RcOptions): Promise<{ a: { cq: number; qpNum: number }; b: { cq: number; qpNum: number } }> {
  const a = await requester.rcQp();
  const b = await responder.rcQp();
  await requester.ctx.connectRc(a.qpNum, { gid: responder.gid, qpNum: b.qpNum }, options);
  await responder.ctx.connectRc(b.qpNum, { gid: requester.gid, qpNum: a.qpNum }, options);
  return { a, b };
}

/** A Transfer on a fresh RC pair from `requester` to `responder` (see rcPair()). */
export async function transferBetween(
  requester: RdmaHost,
  responder: RdmaHost,
  options: RcOptions,
  plan: Omit<TransferPlan, 'host' | 'qpNum' | 'cq'>,
): Promise<{ transfer: Transfer; a: { cq: number; qpNum: number }; b: { cq: number; qpNum: number } }> {
  const { a, b } = await rcPair(requester, responder, options);
  return { transfer: new Transfer({ host: requester, qpNum: a.qpNum, cq: a.cq, ...plan }), a, b };
}

/**
 * A stream of signaled WRs on one QP, every completion recorded by wr_id:
 * what the fault tests read to check that each WR completed exactly once,
 * in order, and with which status.
 */
export class Transfer {
  /** The statuses each wr_id completed with, in arrival order (more than one is a bug). */
  readonly completions = new Map<number, number[]>();
  /** wr_ids in completion order. */
  readonly order: number[] = [];
  posted = 0;
  readonly #plan: TransferPlan;
  #wake: (() => void) | undefined;
  #stopWatch: () => void = () => undefined;
  #stopped = false;

  constructor(plan: TransferPlan) {
    this.#plan = plan;
  }

  /** Posts every WR (keeping `depth` outstanding); resolves once all are posted. */
  async run(): Promise<void> {
    const { host, qpNum, cq, opcode, count, size, local, remote } = this.#plan;
    const depth = this.#plan.depth ?? 64;
    const slots = this.#plan.slots ?? count;
    this.#stopWatch = host.ctx.watchCompletions(cq, true, (batch) => {
      for (const wc of decodeCqes(batch.packedCqes)) {
        const id = Number(wc.wrId);
        const seen = this.completions.get(id) ?? [];
        seen.push(wc.status);
        this.completions.set(id, seen);
        this.order.push(id);
      }
      this.#wake?.();
    });
    const stream = host.ctx.openPostStream(qpNum);
    try {
      while (this.posted < count && !this.#stopped) {
        if (this.posted - this.completions.size >= depth) {
          await new Promise<void>((resolve) => (this.#wake = resolve));
          continue;
        }
        const batch = Math.min(8, count - this.posted, depth - (this.posted - this.completions.size));
        const wqes = Buffer.alloc(batch * WQE_BYTES);
        for (let i = 0; i < batch; i++) {
          const n = this.posted + i;
          const at = (n % slots) * size;
          encodeWqe(wqes, i * WQE_BYTES, {
            wrId: BigInt(n),
            opcode,
            sge: { addr: local.iova + at, length: size, lkey: local.key },
            sendFlags: IBV_SEND_SIGNALED,
            remoteAddr: remote.iova + at,
            rkey: remote.key,
          });
        }
        this.posted += await stream.post(wqes);
      }
    } finally {
      stream.close();
    }
  }

  /** Resolves once `n` WRs have completed (or rejects after `timeoutMs`): a point mid-transfer. */
  async whenCompleted(n: number, timeoutMs = 20_000): Promise<void> {
    const deadline = Date.now() + timeoutMs;
    while (this.completions.size < n) {
      if (Date.now() > deadline) throw new Error(`only ${this.completions.size} WRs completed within ${timeoutMs} ms`);
      await new Promise((resolve) => setTimeout(resolve, 5));
    }
  }

  /** Resolves once a WR completed with an error (or rejects after `timeoutMs`): the QP went to ERR. */
  async whenFailed(timeoutMs: number): Promise<void> {
    const deadline = Date.now() + timeoutMs;
    for (let seen = 0; ; ) {
      for (; seen < this.order.length; seen++) if (this.completions.get(this.order[seen]!)![0] !== WC_STATUS_SUCCESS) return;
      if (Date.now() > deadline) throw new Error(`no WR failed within ${timeoutMs} ms (${this.completions.size} completed)`);
      await new Promise((resolve) => setTimeout(resolve, 10));
    }
  }

  /** Stops posting more. */
  stop(): void {
    this.#stopped = true;
    this.#wake?.();
  }

  /** Resolves once every posted WR has a completion (or rejects after `timeoutMs`). */
  async settled(timeoutMs: number): Promise<void> {
    const deadline = Date.now() + timeoutMs;
    while (this.completions.size < this.posted || this.posted === 0) {
      if (Date.now() > deadline) throw new Error(`${this.completions.size} of ${this.posted} posted WRs completed within ${timeoutMs} ms`);
      await new Promise((resolve) => setTimeout(resolve, 20));
    }
  }

  /** wr_ids by status. */
  byStatus(status: number): number[] {
    return [...this.completions.entries()].filter(([, statuses]) => statuses[0] === status).map(([id]) => id).sort((a, b) => a - b);
  }

  close(): void {
    this.#stopWatch();
  }
}

export const { WC_STATUS_SUCCESS, WC_STATUS_WR_FLUSH_ERR, WC_STATUS_RETRY_EXC_ERR, WC_STATUS_REM_ACCESS_ERR, WC_STATUS_LOC_PROT_ERR } = rdma.WcStatus;

/** A work completion status as ibv_wc_status_str() would name it: REM_ACCESS_ERR, WR_FLUSH_ERR, SUCCESS. */
export function wcStatusName(status: number): string {
  return (rdma.WcStatus[status] ?? `status ${status}`).replace(/^WC_STATUS_/, '');
}

/** The byte WR n writes: every WR is told apart by its pattern. */
export const patternOf = (n: number): number => (n % 251) + 1;

/** `count` WRs of `size` bytes, each filled with its own pattern. */
export function patterned(count: number, size: number): Buffer {
  const buffer = Buffer.alloc(count * size);
  for (let n = 0; n < count; n++) buffer.fill(patternOf(n), n * size, (n + 1) * size);
  return buffer;
}

/** The WRs among `ids` whose `size` bytes in `target` are not their pattern (none: every one landed). */
export function notLanded(target: Buffer, ids: readonly number[], size: number): number[] {
  return ids.filter((n) => !target.subarray(n * size, (n + 1) * size).every((byte) => byte === patternOf(n)));
}

/**
 * How a transfer's WRs completed, against the RC contract (IBTA 10.8.3: a
 * send queue completes in order, and after an error every later WR is
 * flushed): each posted WR exactly once, successes first, then one error,
 * then flushes.
 */
export interface CompletionTally {
  readonly posted: number;
  /** Every posted wr_id completed exactly once, and no other did. */
  readonly everyOnce: boolean;
  /** Completions arrived in post order. */
  readonly inPostOrder: boolean;
  readonly succeeded: number[];
  /** The WRs that completed with an error other than a flush, and the statuses they got. */
  readonly failed: Array<{ readonly wrId: number; readonly status: number }>;
  readonly flushed: number[];
  /** Runs of equal statuses in wr_id order ("0..96: SUCCESS"), for messages. */
  readonly runs: string[];
}

export function tallyCompletions(transfer: Transfer): CompletionTally {
  const ids = [...transfer.completions.keys()].sort((a, b) => a - b);
  const everyOnce =
    ids.length === transfer.posted && ids.every((id, i) => id === i) && [...transfer.completions.values()].every((statuses) => statuses.length === 1);
  const first = (id: number): number => transfer.completions.get(id)![0]!;
  const failed = ids.filter((id) => first(id) !== WC_STATUS_SUCCESS && first(id) !== WC_STATUS_WR_FLUSH_ERR).map((wrId) => ({ wrId, status: first(wrId) }));
  const runs: string[] = [];
  for (let from = 0, id = 1; id <= ids.length; id++) {
    if (id === ids.length || first(ids[id]!) !== first(ids[from]!)) {
      runs.push(`${ids[from]}..${ids[id - 1]}: ${wcStatusName(first(ids[from]!))}`);
      from = id;
    }
  }
  return {
    posted: transfer.posted,
    everyOnce,
    inPostOrder: transfer.order.length === ids.length && transfer.order.every((id, i) => id === ids[i]),
    succeeded: transfer.byStatus(WC_STATUS_SUCCESS),
    failed,
    flushed: transfer.byStatus(WC_STATUS_WR_FLUSH_ERR),
    runs,
  };
}
