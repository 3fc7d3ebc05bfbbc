import type { WorkCompletion } from '../cq/work-completion';
import type { Nic } from '../nic';

/** Where a watched CQ's completions go. */
export interface CompletionSink {
  /** One batch, in CQ order. False when the consumer is backed up: polling stops until resume(). */
  send(wcs: WorkCompletion[]): boolean;
  /** The CQ is gone (destroyed, or its context closed): nothing more will come. */
  end(): void;
}

/**
 * A completion channel that also polls (WatchCompletions): every completion
 * written to the CQ is polled, so its work queue entries retire and the CQ
 * never fills behind a live consumer, and the completions of one event-loop
 * turn go out as one batch. A consumer that stops reading stops the polling,
 * as an application that stops calling ibv_poll_cq() would: the CQ then
 * fills and overflows (IBV_EVENT_CQ_ERR) like any unpolled CQ.
 */
export class CompletionWatcher {
  readonly #nic: Nic;
  readonly #cqHandle: number;
  readonly #cqe: number;
  readonly #sink: CompletionSink;
  readonly #onStop: () => void;
  readonly #unsubscribe: () => void;
  #immediate: NodeJS.Immediate | undefined;
  #paused = false;
  #stopped = false;

  /** `onStop` runs once the watch is over, whichever side ended it. */
  constructor(nic: Nic, cqHandle: number, cqe: number, sink: CompletionSink, onStop: () => void) {
    this.#nic = nic;
    this.#cqHandle = cqHandle;
    this.#cqe = cqe;
    this.#sink = sink;
    this.#onStop = onStop;
    this.#unsubscribe = nic.cq(cqHandle).addListener(() => this.#schedule());
    // What the CQ already holds goes out first.
    this.#schedule();
  }

  /** The consumer caught up: poll again. */
  resume(): void {
    this.#paused = false;
    this.#schedule();
  }

  /** The consumer went away. */
  stop(): void {
    if (this.#stopped) return;
    this.#stopped = true;
    this.#unsubscribe();
    if (this.#immediate !== undefined) clearImmediate(this.#immediate);
    this.#immediate = undefined;
    this.#onStop();
  }

  /** The CQ is going away: stop and tell the consumer. */
  end(): void {
    if (this.#stopped) return;
    this.stop();
    this.#sink.end();
  }

  #schedule(): void {
    if (this.#immediate === undefined && !this.#paused && !this.#stopped) {
      this.#immediate = setImmediate(() => this.#drain());
    }
  }

  #drain(): void {
    this.#immediate = undefined;
    // One poll of the ring's size empties it.
    const wcs = this.#nic.pollCq(this.#cqHandle, this.#cqe);
    if (wcs.length > 0) this.#paused = !this.#sink.send(wcs);
  }
}
