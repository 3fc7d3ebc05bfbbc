import { whenStreamEnds } from '@p2p/server';

/**
 * The server's open streams, ended at shutdown: a watcher or a post stream
 * never hangs up by itself, and the drain would otherwise wait them out.
 */
export class OpenStreams {
  readonly #enders = new Set<() => void>();

  /** Ends `call` with `end` at shutdown, unless it ended before. */
  track(call: NodeJS.EventEmitter, end: () => void): void {
    this.#enders.add(end);
    whenStreamEnds(call, () => this.#enders.delete(end));
  }

  endAll(): void {
    for (const end of [...this.#enders]) end();
  }
}
