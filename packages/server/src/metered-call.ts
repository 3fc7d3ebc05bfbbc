import type { MethodTally } from './method-tally';
import { type CallStatus, type NextCall, PassThroughCall } from './pass-through-call';

/** A call that adds its status and duration to its method's tally as it ends. */
export class MeteredCall extends PassThroughCall {
  readonly #tally: MethodTally;
  readonly #started = performance.now();

  constructor(next: NextCall, tally: MethodTally) {
    super(next);
    this.#tally = tally;
  }

  override sendStatus(status: CallStatus): void {
    this.#tally.record(status.code, (performance.now() - this.#started) / 1e3);
    super.sendStatus(status);
  }
}
