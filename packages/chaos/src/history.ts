/**
 * A Jepsen-style history: every operation a client attempts is an `invoke`,
 * followed by exactly one completion: `ok` (it happened), `fail` (it did
 * not: the service said so), or `info` (nobody knows: the call timed out,
 * the answer was lost, the client died). Checkers must treat `info` as
 * possibly done and possibly not, never as failed.
 */
export type OpType = 'invoke' | 'ok' | 'fail' | 'info';

export interface Op {
  /** Position in the history, from 0. */
  readonly index: number;
  /** Nanoseconds since the campaign started (one monotonic clock: the campaign's). */
  readonly time: number;
  /** Who did it: a workload worker ("w0"), or "nemesis". */
  readonly process: string;
  readonly type: OpType;
  /** What was done: "write", "read", "revoke", "unrevoke", "kill", "leak-check"... */
  readonly f: string;
  readonly value?: Readonly<Record<string, unknown>>;
  /** For fail and info: the errno or status name, and what was said. */
  readonly error?: string;
  /**
   * For a completion: the index of the invoke it completes. A worker may
   * have many operations in flight (a queue pair's pipelined work
   * requests), so completions name their invoke instead of following it.
   */
  readonly invoke?: number;
}

/** The process a nemesis runs as in the history. */
export const NEMESIS = 'nemesis';

/**
 * Builds a history as a campaign runs: stamps each op with its index and
 * time, and hands completions the invoke they complete, so a worker cannot
 * complete what it never invoked.
 */
export class HistoryRecorder {
  readonly #ops: Op[] = [];
  readonly #start: bigint;

  constructor(
    private readonly clock: () => bigint = () => process.hrtime.bigint(),
    /** Sees each op as it is recorded (to stream the history as JSONL). */
    private readonly onOp?: (op: Op) => void,
  ) {
    this.#start = clock();
  }

  get ops(): readonly Op[] {
    return this.#ops;
  }

  invoke(process: string, f: string, value?: Record<string, unknown>): Op {
    return this.#record({ process, type: 'invoke', f, value });
  }

  /** Completes `invoke` as ok, fail or info, with what the completion learned. */
  complete(invoke: Op, type: Exclude<OpType, 'invoke'>, value?: Record<string, unknown>, error?: string): Op {
    if (invoke.type !== 'invoke') throw new Error(`op ${invoke.index} is a completion, not an invoke`);
    return this.#record({ process: invoke.process, type, f: invoke.f, value: { ...invoke.value, ...value }, ...(error === undefined ? {} : { error }), invoke: invoke.index });
  }

  #record(op: Omit<Op, 'index' | 'time'>): Op {
    const recorded: Op = { index: this.#ops.length, time: Number(this.clock() - this.#start), ...op };
    this.#ops.push(recorded);
    this.onOp?.(recorded);
    return recorded;
  }
}

/** One JSON object per line, as Jepsen's history.edn is one map per line. */
export function historyToJsonl(ops: readonly Op[]): string {
  return ops.map((op) => JSON.stringify(op)).join('\n') + (ops.length > 0 ? '\n' : '');
}

export function historyFromJsonl(text: string): Op[] {
  return text
    .split('\n')
    .filter((line) => line.trim() !== '')
    .map((line, i) => {
      const op = JSON.parse(line) as Op;
      if (op.index !== i) throw new Error(`line ${i + 1} has index ${op.index}`);
      return op;
    });
}

/** An invoke and every completion that names it (one, in a sound history). */
export interface OpPair {
  readonly invoke: Op;
  readonly completions: readonly Op[];
}

/**
 * Groups completions under the invokes they name, in invoke order, and
 * returns the completions that name no invoke: the checkers judge both.
 */
export function pairs(ops: readonly Op[]): { pairs: OpPair[]; orphans: Op[] } {
  const byInvoke = new Map<number, { invoke: Op; completions: Op[] }>();
  const orphans: Op[] = [];
  for (const op of ops) {
    if (op.type === 'invoke') {
      byInvoke.set(op.index, { invoke: op, completions: [] });
      continue;
    }
    const pair = op.invoke === undefined ? undefined : byInvoke.get(op.invoke);
    if (pair === undefined) orphans.push(op);
    else pair.completions.push(op);
  }
  return { pairs: [...byInvoke.values()], orphans };
}
