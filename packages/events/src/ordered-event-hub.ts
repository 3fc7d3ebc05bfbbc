export type EventListener<E> = (event: E) => void;

/** An event before the hub numbers it (Omit applied to each member of a union). */
export type Unnumbered<E extends { readonly sequence: number }> = E extends unknown ? Omit<E, 'sequence'> : never;

/**
 * Numbers events and delivers them synchronously, in order. Events posted
 * while a delivery is running (a listener that calls back into the domain)
 * queue behind the one being delivered, so every listener sees one global
 * order. A throwing listener neither undoes the change nor starves the other
 * listeners: its error is rethrown on a microtask.
 */
export class OrderedEventHub<E extends { readonly sequence: number }> {
  readonly #listeners = new Set<EventListener<E>>();
  readonly #queue: E[] = [];
  #sequence = 0;
  #delivering = false;

  subscribe(listener: EventListener<E>): () => void {
    this.#listeners.add(listener);
    return () => {
      this.#listeners.delete(listener);
    };
  }

  /** Numbers `body` and queues it; flush() delivers. For operations that post several events, then deliver. */
  post(body: Unnumbered<E>): void {
    this.#queue.push({ ...body, sequence: ++this.#sequence } as unknown as E);
  }

  /** Delivers every queued event, unless a delivery is already running (it will). */
  flush(): void {
    if (this.#delivering) return;
    this.#delivering = true;
    try {
      for (let event = this.#queue.shift(); event; event = this.#queue.shift()) {
        for (const listener of [...this.#listeners]) {
          try {
            listener(event);
          } catch (error) {
            queueMicrotask(() => {
              throw error;
            });
          }
        }
      }
    } finally {
      this.#delivering = false;
    }
  }

  /** post() then flush(): an event delivered as its change happens. */
  emit(body: Unnumbered<E>): void {
    this.post(body);
    this.flush();
  }
}
