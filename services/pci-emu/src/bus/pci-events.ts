/** Power states a function can be put in: PMC advertises neither D1 nor D2. */
export type PowerState = 'D0' | 'D3hot';

/** Why decode changed: a PCI_COMMAND write, a power transition, a reset, or hot-plug. */
export type DecodeReason = 'COMMAND_WRITE' | 'POWER' | 'RESET' | 'HOTPLUG';

/**
 * FLR: PCI_EXP_DEVCTL_BCR_FLR or the FLR op. RESET: conventional reset (the
 * reset op). POWER_ON_RESET: the internal reset of D3hot -> D0 with
 * No_Soft_Reset clear, and the power-up of a re-plugged function.
 */
export type ResetKind = 'FLR' | 'RESET' | 'POWER_ON_RESET';

interface EventHeader {
  /** Position in the bus's single event order, from 1. */
  readonly sequence: number;
  readonly bdf: string;
}

/**
 * What listeners see. Decode is the effective one: memory or bus-master
 * traffic flows only with the PCI_COMMAND bit set, in D0, while present.
 */
export type PciEvent = EventHeader &
  (
    | { readonly type: 'decode-changed'; readonly memoryEnabled: boolean; readonly busMaster: boolean; readonly reason: DecodeReason }
    | { readonly type: 'reset'; readonly kind: ResetKind }
    | { readonly type: 'power-changed'; readonly from: PowerState; readonly to: PowerState }
    | { readonly type: 'unplugged' }
    | { readonly type: 'replugged' }
  );

type DistributiveOmit<T, K extends PropertyKey> = T extends unknown ? Omit<T, K> : never;

/** An event before the hub numbers it. */
export type PciEventBody = DistributiveOmit<PciEvent, 'sequence'>;

export type PciEventListener = (event: PciEvent) => void;

/**
 * Numbers events and delivers them synchronously, in order, once the
 * operation that caused them has finished (flush). A listener that calls back
 * into the bus has its events queued behind the ones being delivered, so every
 * listener sees one global order. A throwing listener does not undo the state
 * change or starve other listeners: its error is rethrown on a microtask.
 */
export class PciEventHub {
  readonly #listeners = new Set<PciEventListener>();
  readonly #queue: PciEvent[] = [];
  #sequence = 0;
  #delivering = false;

  subscribe(listener: PciEventListener): () => void {
    this.#listeners.add(listener);
    return () => {
      this.#listeners.delete(listener);
    };
  }

  post(body: PciEventBody): void {
    this.#queue.push({ sequence: ++this.#sequence, ...body } as PciEvent);
  }

  flush(): void {
    if (this.#delivering) {
      return;
    }
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
