import type { ServiceEvent } from './service-event';

/** Wall-time order; within one service (same clock), its sequence. */
export function compareEvents(a: ServiceEvent, b: ServiceEvent): number {
  if (a.unixNanos !== b.unixNanos) return a.unixNanos < b.unixNanos ? -1 : 1;
  if (a.service !== b.service) return a.service < b.service ? -1 : 1;
  return a.sequence < b.sequence ? -1 : a.sequence > b.sequence ? 1 : 0;
}

/**
 * Merges the streams of several services into one wall-time order. Each
 * stream is in order, but the streams arrive skewed by their transit: an
 * event is held until the wall clock is `windowNs` past its time, by when
 * an earlier event of a slower stream has arrived too, then released with
 * every earlier one. An event later than that is released at once, out of
 * order, rather than held back or dropped.
 */
export class ReorderWindow {
  readonly #held: ServiceEvent[] = [];

  constructor(
    private readonly windowNs: bigint,
    private readonly release: (event: ServiceEvent) => void,
  ) {}

  push(event: ServiceEvent): void {
    let at = this.#held.length;
    while (at > 0 && compareEvents(this.#held[at - 1]!, event) > 0) at--;
    this.#held.splice(at, 0, event);
  }

  /** Releases the events older than the window at wall time `nowNs`. */
  tick(nowNs: bigint): void {
    const horizon = nowNs - this.windowNs;
    let count = 0;
    while (count < this.#held.length && this.#held[count]!.unixNanos <= horizon) count++;
    for (const event of this.#held.splice(0, count)) this.release(event);
  }

  /** Releases everything held: the watch is ending. */
  drain(): void {
    for (const event of this.#held.splice(0)) this.release(event);
  }
}
