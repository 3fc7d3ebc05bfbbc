import { status as Code } from '@grpc/grpc-js';
import { Counter, type Metric, type Registry } from 'prom-client';

/** Upper bounds of grpc_server_handling_seconds' buckets, in seconds. */
export const HANDLING_BUCKETS: readonly number[] = [0.0001, 0.0005, 0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1, 5];

/**
 * What one method's calls came to, in plain numbers: how many ended with
 * each status code, and their durations in HANDLING_BUCKETS. Ending a call
 * costs a few increments; prom-client's Counter and Histogram would build,
 * validate and hash a label key (and turn a bucket bound into a property
 * name) for each, about 10 µs of every RPC on the server's hot path. The
 * registry reads the tallies when /metrics is scraped instead.
 */
export class MethodTally {
  /** Calls by the status code they ended with. */
  readonly byCode = new Map<number, number>();
  /** Calls by bucket, not cumulative: [i] counts durations above bound i-1 up to bound i; the last, those above every bound. */
  readonly buckets = new Float64Array(HANDLING_BUCKETS.length + 1);
  count = 0;
  /** Seconds, all calls together. */
  sum = 0;

  constructor(readonly method: string) {}

  record(code: number, seconds: number): void {
    this.byCode.set(code, (this.byCode.get(code) ?? 0) + 1);
    let bucket = 0;
    while (bucket < HANDLING_BUCKETS.length && seconds > HANDLING_BUCKETS[bucket]) bucket++;
    this.buckets[bucket]++;
    this.count++;
    this.sum += seconds;
  }

  clear(): void {
    this.byCode.clear();
    this.buckets.fill(0);
    this.count = 0;
    this.sum = 0;
  }
}

/** grpc_server_handled_total: calls by method and status code, read from the tallies at each scrape. */
export function registerHandledTotal(registry: Registry, tallies: ReadonlyMap<string, MethodTally>): void {
  new Counter({
    name: 'grpc_server_handled_total',
    help: 'RPCs completed on the server, by method and status code',
    labelNames: ['method', 'code'],
    registers: [registry],
    collect() {
      this.reset();
      for (const tally of tallies.values()) {
        for (const [code, calls] of tally.byCode) this.inc({ method: tally.method, code: Code[code] ?? String(code) }, calls);
      }
    },
  });
}

/** One sample of a metric as prom-client's registry formats it: `metricName{labels} value`. */
interface Sample {
  metricName: string;
  labels: Record<string, string | number>;
  value: number;
}

/**
 * grpc_server_handling_seconds: a histogram by method, read from the
 * tallies at each scrape. prom-client's registry takes any metric that has
 * a name, help, type, aggregator, get() and reset() (it formats the samples
 * and adds the default labels), though its types admit only its own
 * classes; its Histogram cannot be set from counts, only observed call by
 * call.
 */
class HandlingSeconds {
  readonly name = 'grpc_server_handling_seconds';
  readonly help = 'Time from call start to status, by method';
  readonly type = 'histogram';
  /** How a cluster of workers combines it. */
  readonly aggregator = 'sum';

  constructor(private readonly tallies: ReadonlyMap<string, MethodTally>) {}

  get(): Promise<{ name: string; help: string; type: string; aggregator: string; values: Sample[] }> {
    const values: Sample[] = [];
    for (const { method, buckets, count, sum } of this.tallies.values()) {
      let cumulative = 0;
      HANDLING_BUCKETS.forEach((le, i) => {
        cumulative += buckets[i];
        values.push({ metricName: `${this.name}_bucket`, labels: { le, method }, value: cumulative });
      });
      values.push(
        { metricName: `${this.name}_bucket`, labels: { le: '+Inf', method }, value: count },
        { metricName: `${this.name}_sum`, labels: { method }, value: sum },
        { metricName: `${this.name}_count`, labels: { method }, value: count },
      );
    }
    return Promise.resolve({ name: this.name, help: this.help, type: this.type, aggregator: this.aggregator, values });
  }

  /** The registry's resetMetrics(): every method starts again from nothing, its counts too. */
  reset(): void {
    for (const tally of this.tallies.values()) tally.clear();
  }
}

export function registerHandlingSeconds(registry: Registry, tallies: ReadonlyMap<string, MethodTally>): void {
  registry.registerMetric(new HandlingSeconds(tallies) as unknown as Metric);
}
