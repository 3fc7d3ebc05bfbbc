import { OrderedEventHub, type Unnumbered } from '@p2p/events';

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

/** An event before the hub numbers it. */
export type PciEventBody = Unnumbered<PciEvent>;

export type PciEventListener = (event: PciEvent) => void;

/**
 * The bus's events: an operation posts the events it causes and they are
 * delivered, in one global order, once it has finished (flush).
 */
export class PciEventHub extends OrderedEventHub<PciEvent> {}
