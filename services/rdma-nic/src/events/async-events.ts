import type { AsyncEventType } from '../verbs/enums';

/** struct ibv_async_event: the element is a QP (qpNum) or a CQ (cqHandle). */
export interface AsyncEvent {
  readonly type: AsyncEventType;
  readonly qpNum?: number;
  readonly cqHandle?: number;
}

export type AsyncEventListener = (event: AsyncEvent) => void;

/** The context's async event queue, read by ibv_get_async_event(); here, pushed to listeners. */
export class AsyncEvents {
  readonly #listeners = new Set<AsyncEventListener>();

  emit(event: AsyncEvent): void {
    for (const listener of this.#listeners) {
      listener(event);
    }
  }

  /** Returns the unsubscribe. */
  addListener(listener: AsyncEventListener): () => void {
    this.#listeners.add(listener);
    return () => this.#listeners.delete(listener);
  }
}
