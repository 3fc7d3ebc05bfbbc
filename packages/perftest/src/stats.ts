/** Percentile of an ascending-sorted sample (nearest rank). */
export function percentile(sorted: readonly number[], p: number): number {
  if (sorted.length === 0) return Number.NaN;
  const rank = Math.min(sorted.length - 1, Math.max(0, Math.ceil((p / 100) * sorted.length) - 1));
  return sorted[rank]!;
}

/** A latency test's figures in microseconds, perftest's columns (print_report_lat). */
export interface LatencyStats {
  readonly min: number;
  readonly max: number;
  /** The median: what perftest calls typical. */
  readonly typical: number;
  readonly average: number;
  readonly stdev: number;
  readonly p99: number;
  readonly p999: number;
}

/** The figures of an ascending-sorted sample of latencies. */
export function latencyStats(sorted: readonly number[]): LatencyStats {
  const average = sorted.reduce((sum, t) => sum + t, 0) / sorted.length;
  const variance = sorted.reduce((sum, t) => sum + (t - average) ** 2, 0) / sorted.length;
  return {
    min: sorted[0] ?? Number.NaN,
    max: sorted.at(-1) ?? Number.NaN,
    typical: percentile(sorted, 50),
    average,
    stdev: Math.sqrt(variance),
    p99: percentile(sorted, 99),
    p999: percentile(sorted, 99.9),
  };
}

/** How many messages had completed at a moment (process.hrtime.bigint()). */
export interface CompletionMark {
  readonly at: bigint;
  readonly done: number;
}

/**
 * The best rate in bytes per second over any tenth of the run's messages
 * (perftest's peak is over its fastest stretch). A stretch also lasts at
 * least a tenth of the run's time: with several QPs, completions of batches
 * that ran side by side arrive microseconds apart and would look instant.
 */
export function peakRate(start: bigint, marks: readonly CompletionMark[], size: number): number {
  const last = marks.at(-1);
  const total = last?.done ?? 0;
  const shortest = last === undefined ? 0n : (last.at - start) / 10n;
  let best = 0;
  let from: CompletionMark = { at: start, done: 0 };
  for (const mark of marks) {
    if (mark.done - from.done >= total / 10 && mark.at - from.at >= shortest) {
      best = Math.max(best, ((mark.done - from.done) * size) / (Number(mark.at - from.at) / 1e9));
      from = mark;
    }
  }
  return best;
}
