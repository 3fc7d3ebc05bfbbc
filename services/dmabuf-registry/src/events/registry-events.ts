export type RegistryEventKind =
  | 'EXPORT'
  | 'ATTACH'
  | 'MAP'
  | 'UNMAP'
  | 'DETACH'
  | 'MOVE_NOTIFY'
  | 'ACK'
  | 'FENCE'
  | 'RELEASE'
  | 'REVOKE'
  | 'UNREVOKE'
  | 'PIN'
  | 'UNPIN'
  | 'PROCESS_EXIT';

export interface RegistryEvent {
  /** Position in the registry's single event order, from 1. */
  readonly sequence: number;
  readonly kind: RegistryEventKind;
  readonly bufferId?: number;
  readonly attachmentId?: number;
  readonly pid?: number;
  readonly detail: string;
}

/** An event before the hub numbers it. */
export type RegistryEventBody = Omit<RegistryEvent, 'sequence'>;

export type RegistryEventListener = (event: RegistryEvent) => void;

/**
 * Numbers events and delivers them synchronously, in order, as the state
 * changes they describe happen. A listener that calls back into the registry
 * has its events queued behind the one being delivered, so every listener
 * sees one global order. A throwing listener does not undo the change nor
 * starve the others: its error is rethrown on a microtask.
 */
export class RegistryEvents {
  readonly #listeners = new Set<RegistryEventListener>();
  readonly #queue: RegistryEvent[] = [];
  #sequence = 0;
  #delivering = false;

  subscribe(listener: RegistryEventListener): () => void {
    this.#listeners.add(listener);
    return () => {
      this.#listeners.delete(listener);
    };
  }

  emit(body: RegistryEventBody): void {
    this.#queue.push({ sequence: ++this.#sequence, ...body });
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
}
