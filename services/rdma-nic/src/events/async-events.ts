import { eventTime, type EventTime } from '@p2p/events';
import type { AsyncEventType } from '../verbs/enums';

/** struct ibv_async_event: the element is a QP (qpNum) or a CQ (cqHandle). */
export interface AsyncEvent {
  readonly type: AsyncEventType;
  readonly qpNum?: number;
  readonly cqHandle?: number;
  /** When the NIC raised it (a watch of several services aligns them by its wall clock). */
  readonly time: EventTime;
}

export type AsyncEventListener = (event: AsyncEvent) => void;

/** The context's async event queue, read by ibv_get_async_event(); here, pushed to listeners. */
export class AsyncEvents {
  readonly #listeners = new Set<AsyncEventListener>();

  /** Stamps and delivers an event; nothing is built while no context watches. */
  emit(event: Omit<AsyncEvent, 'time'>): void {
    if (this.#listeners.size === 0) return;
    const stamped: AsyncEvent = { ...event, time: eventTime() };
    for (const listener of this.#listeners) {
      listener(stamped);
    }
  }

  /** Returns the unsubscribe. */
  addListener(listener: AsyncEventListener): () => void {
    this.#listeners.add(listener);
    return () => this.#listeners.delete(listener);
  }
}
