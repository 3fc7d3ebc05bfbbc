import type { NvmeQueueLocation } from './nvme-queue';

/** How a doorbell write reached the controller: a CPU's MMIO write, or a peer's DMA into BAR0. */
export type NvmeDoorbellPath = 'mmio' | 'p2p';

/**
 * What the controller reports, for logs and metrics: each completed command
 * (its queue, id, opcode, status and data bytes), each queue created or
 * deleted (a controller reset deletes them all), each doorbell write with its
 * path and whether the controller took it, and each change of state.
 */
export type NvmeEvent =
  | {
      readonly kind: 'command';
      readonly qid: number;
      readonly cid: number;
      readonly opcode: number;
      /** The Status Field (nvme-status.ts): 0 on success. */
      readonly status: number;
      /** Data bytes moved. */
      readonly bytes: number;
    }
  | { readonly kind: 'queue-created'; readonly queue: 'sq' | 'cq'; readonly qid: number; readonly entries: number; readonly location: NvmeQueueLocation }
  | { readonly kind: 'queue-deleted'; readonly queue: 'sq' | 'cq'; readonly qid: number }
  | { readonly kind: 'doorbell'; readonly index: number; readonly value: number; readonly path: NvmeDoorbellPath; readonly accepted: boolean }
  | { readonly kind: 'state'; readonly state: 'ready' | 'reset' | 'shutdown-complete' | 'fatal'; readonly reason: string };

export type NvmeObserver = (event: NvmeEvent) => void;
