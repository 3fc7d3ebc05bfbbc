/** Listener signatures by event name. */
export type EventMap<Events> = { [K in keyof Events]: (...args: never[]) => void };

/**
 * A small typed event API (on/off) for the sessions' 'lost' and 'error'
 * events. Unlike Node's EventEmitter an 'error' nobody listens to is dropped,
 * and a listener that throws neither stops the other listeners nor the
 * session's own bookkeeping: its exception is rethrown on a fresh task, where
 * it is an uncaught exception like any other bug.
 */
export class Emitter<Events extends EventMap<Events>> {
  readonly #listeners = new Map<keyof Events, Set<Events[keyof Events]>>();

  /** Calls `listener` on every `event`; returns a function that removes it. */
  on<K extends keyof Events>(event: K, listener: Events[K]): () => void {
    let set = this.#listeners.get(event);
    if (set === undefined) {
      set = new Set();
      this.#listeners.set(event, set);
    }
    set.add(listener);
    return () => this.off(event, listener);
  }

  /** Removes a listener added with on(). */
  off<K extends keyof Events>(event: K, listener: Events[K]): void {
    this.#listeners.get(event)?.delete(listener);
  }

  /** Calls the listeners of `event` in the order they were added. */
  protected emit<K extends keyof Events>(event: K, ...args: Parameters<Events[K]>): void {
    for (const listener of [...(this.#listeners.get(event) ?? [])]) {
      try {
        (listener as Events[K])(...args);
      } catch (error) {
        setImmediate(() => {
          throw error;
        });
      }
    }
  }
}
