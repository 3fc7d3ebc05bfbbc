/**
 * When an event happened, on two clocks. `monotonicNs` is this process's
 * process.hrtime.bigint(): it orders and spaces this process's events
 * exactly, but another process's monotonic clock starts elsewhere, so
 * events of different services can only be aligned by `unixNanos`.
 */
export interface EventTime {
  readonly monotonicNs: bigint;
  /** Nanoseconds since the Unix epoch. */
  readonly unixNanos: bigint;
}

// Date.now() has millisecond steps, too coarse to order a revoke and its
// move_notify. The wall clock here is the one reading of it at start plus
// the monotonic time since, so it has the monotonic clock's resolution and
// never steps back; it does not follow a wall clock set after start.
const originMonotonicNs = process.hrtime.bigint();
const originUnixNanos = BigInt(Math.round((performance.timeOrigin + performance.now()) * 1000)) * 1000n;

/** Now, on both clocks. */
export function eventTime(): EventTime {
  const monotonicNs = process.hrtime.bigint();
  return { monotonicNs, unixNanos: originUnixNanos + (monotonicNs - originMonotonicNs) };
}
