export { percentile } from '@p2p/perftest';

/** Seconds since `start` (from process.hrtime.bigint()). */
export function secondsSince(start: bigint): number {
  return Number(process.hrtime.bigint() - start) / 1e9;
}

/** Runs `op` `iterations` times and returns per-call latencies in microseconds, sorted. */
export async function timeEach(iterations: number, op: (i: number) => Promise<unknown>): Promise<number[]> {
  const samples: number[] = [];
  for (let i = 0; i < iterations; i++) {
    const start = process.hrtime.bigint();
    await op(i);
    samples.push(Number(process.hrtime.bigint() - start) / 1e3);
  }
  return samples.sort((a, b) => a - b);
}

/**
 * Times `ops` call for call in turn, `iterations` rounds after `warmup`
 * untimed ones, so that every op sees the same load on a shared machine.
 * Returns each op's latencies in microseconds, sorted.
 */
export async function timeInTurn(iterations: number, warmup: number, ...ops: Array<() => Promise<unknown>>): Promise<number[][]> {
  const samples = ops.map((): number[] => []);
  for (let i = 0; i < warmup + iterations; i++) {
    for (const [index, op] of ops.entries()) {
      const start = process.hrtime.bigint();
      await op();
      if (i >= warmup) samples[index]!.push(Number(process.hrtime.bigint() - start) / 1e3);
    }
  }
  return samples.map((sample) => sample.sort((a, b) => a - b));
}

/** Runs `total` calls of `op` keeping `depth` in flight; returns calls per second. */
export async function rateWithDepth(total: number, depth: number, op: (i: number) => Promise<unknown>): Promise<number> {
  let next = 0;
  const start = process.hrtime.bigint();
  const worker = async (): Promise<void> => {
    while (next < total) await op(next++);
  };
  await Promise.all(Array.from({ length: depth }, worker));
  return total / secondsSince(start);
}

/** Bytes per second of `repeat` runs of a synchronous copy of `bytes` bytes (best of 3 rounds). */
export function copyRate(bytes: number, repeat: number, copy: () => void): number {
  copy();
  let best = 0;
  for (let round = 0; round < 3; round++) {
    const start = process.hrtime.bigint();
    for (let i = 0; i < repeat; i++) copy();
    best = Math.max(best, (bytes * repeat) / secondsSince(start));
  }
  return best;
}

/**
 * memcpy of `size`-byte pieces from `from` to `to`, cycling through the first
 * `workingSet` bytes of both, so large copies stream through memory rather
 * than one cache-hot spot; bytes per second (best of 3 rounds).
 */
export function cyclingCopyRate(from: Uint8Array, to: Uint8Array, size: number, workingSet: number): number {
  let at = 0;
  return copyRate(size, Math.max(16, (256 * 2 ** 20) / size), () => {
    to.set(from.subarray(at, at + size), at);
    at = (at + size) % workingSet;
  });
}

export const GB = 1e9;
