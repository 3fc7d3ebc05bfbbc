import { type EventTime, OrderedEventHub, type Unnumbered } from '@p2p/events';
import type { BarWritePath } from '../devices/device-model';
import type { DmaErrorName } from '../devices/dma-engine';
import type { NvmeEvent } from '../devices/nvme/nvme-events';
import type { IommuFaultRecord } from '../iommu/iommu-fault';

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
  /** When the operation posted it: it is delivered once the outermost operation ends. */
  readonly time: EventTime;
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
    /** A DMA the IOMMU refused; `bdf` is the requester. */
    | ({ readonly type: 'iommu-fault' } & Omit<IommuFaultRecord, 'bdf'>)
    /** Domain events: `bdf` is empty and `devices` are the functions attached at the time. */
    | { readonly type: 'iommu-mapped'; readonly domainId: number; readonly iova: number; readonly length: number; readonly prot: number; readonly devices: readonly string[] }
    | {
        readonly type: 'iommu-unmapped';
        readonly domainId: number;
        readonly iova: number;
        readonly length: number;
        /** Bytes that were mapped in [iova, iova + length). */
        readonly unmapped: number;
        readonly devices: readonly string[];
      }
    /**
     * Bytes [offset, offset + length) of BAR `bar` (BAR offsets) were written
     * by MMIO or by a bus master: posted only by a device that asks to report
     * such writes (the generic test device, for its memory windows).
     */
    | { readonly type: 'bar-written'; readonly bar: number; readonly offset: number; readonly length: number; readonly path: BarWritePath }
    /** A DMA-engine transfer finished; `bdf` is the engine's function. */
    | {
        readonly type: 'dma-completed';
        readonly status: 'DONE' | 'ERROR';
        readonly error: DmaErrorName;
        /** Bytes written to the destination. */
        readonly bytes: number;
        readonly srcIova: bigint;
        readonly dstIova: bigint;
        /** The IOVA of an IOMMU fault or master abort, else 0. */
        readonly faultIova: bigint;
      }
    /**
     * What an NVMe controller reported (nvme-events.ts): a command completed,
     * a doorbell written, a queue created or deleted, a change of state.
     * Several per I/O, so only listeners that ask for them see them
     * (PciBus.onEvent), and none is posted while none asks.
     */
    | { readonly type: 'nvme'; readonly nvme: NvmeEvent }
  );

/** Which events a listener takes beyond the platform's own. */
export interface PciEventFilter {
  /** NVMe controller events too (type 'nvme'); default false. */
  readonly nvme?: boolean;
}

/** An event before the hub numbers and stamps it. */
export type PciEventBody = Unnumbered<PciEvent>;

export type PciEventListener = (event: PciEvent) => void;

/**
 * The bus's events: an operation posts the events it causes and they are
 * delivered, in one global order, once it has finished. Operations nest (an
 * MMIO write that starts a DMA that faults in the IOMMU): delivery waits for
 * the outermost one, so no listener sees the platform mid-operation.
 */
export class PciEventHub extends OrderedEventHub<PciEvent> {
  #depth = 0;

  /** Runs one operation, then delivers the events it (and every operation nested in it) posted. */
  batch<T>(operation: () => T): T {
    this.#depth++;
    try {
      return operation();
    } finally {
      if (--this.#depth === 0) this.flush();
    }
  }
}
