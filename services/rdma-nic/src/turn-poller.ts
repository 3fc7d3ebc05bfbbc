import { performance } from 'node:perf_hooks';

/** How long an awake source is polled after its last work before the NIC sleeps on it. */
export const IDLE_BEFORE_SLEEP_MS = 1;

/** Something the NIC polls for work in shared memory: user queues' doorbell records, a peer's frame ring. */
export interface PolledSource {
  /** Runs what is there; true if there was any. */
  scan(): boolean;
  /** Says in shared memory that nobody polls, then looks once more: false (and awake again) if work came meanwhile. */
  sleep(): boolean;
  /** Says in shared memory that the NIC polls again. */
  wake(): void;
}

/**
 * How the NIC finds work in shared memory. Awake sources are polled every
 * event-loop turn (setImmediate) until they have been idle
 * IDLE_BEFORE_SLEEP_MS; then the NIC sleeps on them, and only a wake-up
 * (a byte on a doorbell socket, a message on a link's stream, from a writer
 * that saw the sleep flag) makes it poll again. With no awake source the
 * loop stops: an idle NIC does no work and holds no timer.
 */
export class TurnPoller<S extends PolledSource> {
  /** Awake sources and when each last had work. */
  readonly #awake = new Map<S, number>();
  #scheduled = false;
  readonly #turn = (): void => this.#poll();

  /** A wake-up: poll `source` now and from now on. */
  wake(source: S): void {
    source.wake();
    source.scan();
    this.#awake.set(source, performance.now());
    this.#schedule();
  }

  forget(source: S): void {
    this.#awake.delete(source);
  }

  #schedule(): void {
    if (this.#scheduled || this.#awake.size === 0) return;
    this.#scheduled = true;
    setImmediate(this.#turn);
  }

  #poll(): void {
    this.#scheduled = false;
    const now = performance.now();
    for (const [source, lastWork] of this.#awake) {
      if (source.scan()) this.#awake.set(source, now);
      else if (now - lastWork > IDLE_BEFORE_SLEEP_MS && source.sleep()) this.#awake.delete(source);
    }
    this.#schedule();
  }
}
