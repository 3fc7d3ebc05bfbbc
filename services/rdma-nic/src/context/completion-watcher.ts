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
 * never fills behind a live consumer, and the completions one task writes
 * (the answers of one incoming wire frame, say) go out as one batch, at the
 * end of that task (process.nextTick): the batch then leaves in this
 * loop iteration's check phase, not after the next iteration's input as a
 * setImmediate write would. A consumer that stops reading stops the polling,
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
  readonly #drainTask = (): void => this.#drain();
  /** A drain is queued (process.nextTick). */
  #scheduled = false;
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
    this.#onStop();
  }

  /** The CQ is going away: stop and tell the consumer. */
  end(): void {
    if (this.#stopped) return;
    this.stop();
    this.#sink.end();
  }

  #schedule(): void {
    if (!this.#scheduled && !this.#paused && !this.#stopped) {
      this.#scheduled = true;
      process.nextTick(this.#drainTask);
    }
  }

  #drain(): void {
    this.#scheduled = false;
    // A tick cannot be cancelled: a watch stopped since it was queued polls nothing.
    if (this.#paused || this.#stopped) return;
    // One poll of the ring's size empties it.
    const wcs = this.#nic.pollCq(this.#cqHandle, this.#cqe);
    if (wcs.length > 0) this.#paused = !this.#sink.send(wcs);
  }
}
