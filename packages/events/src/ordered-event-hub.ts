import { eventTime, type EventTime } from './event-time';

export type EventListener<E> = (event: E) => void;

/** What the hub adds to every event: its place in the order and when it happened. */
export interface EventStamp {
  /** Position in the hub's single event order, from 1. */
  readonly sequence: number;
  readonly time: EventTime;
}

/** An event before the hub numbers and stamps it (Omit applied to each member of a union). */
export type Unnumbered<E extends EventStamp> = E extends unknown ? Omit<E, keyof EventStamp> : never;

/**
 * Numbers and timestamps events and delivers them synchronously, in order.
 * Events posted while a delivery is running (a listener that calls back into
 * the domain) queue behind the one being delivered, so every listener sees
 * one global order. A throwing listener neither undoes the change nor starves the other
 * listeners: its error is rethrown on a microtask. An event nobody listens
 * to when it happens is numbered (a watch sees the gap) but neither stamped
 * nor queued: events cost a counter while no one watches.
 */
export class OrderedEventHub<E extends EventStamp> {
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

  /**
   * Numbers `body`, stamps it with the time it happened (now, not when
   * flush() delivers it) and queues it; flush() delivers. For operations
   * that post several events, then deliver. Returns its sequence, which
   * later events may carry to say what they follow from.
   */
  post(body: Unnumbered<E>): number {
    const sequence = ++this.#sequence;
    if (this.#listeners.size > 0) this.#queue.push({ ...body, sequence, time: eventTime() } as unknown as E);
    return sequence;
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

  /** post() then flush(): an event delivered as its change happens. Returns its sequence. */
  emit(body: Unnumbered<E>): number {
    const sequence = this.post(body);
    this.flush();
    return sequence;
  }
}
