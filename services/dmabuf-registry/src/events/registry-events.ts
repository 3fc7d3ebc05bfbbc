import { type EventTime, OrderedEventHub, type Unnumbered } from '@p2p/events';

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
  | 'PROCESS_EXIT'
  | 'MMAP'
  | 'MUNMAP'
  | 'PIN_USER_PAGES'
  | 'UNPIN_USER_PAGES'
  | 'MOVE_DONE';

export interface RegistryEvent {
  /** Position in the registry's single event order, from 1. */
  readonly sequence: number;
  /** When the state change happened. */
  readonly time: EventTime;
  readonly kind: RegistryEventKind;
  readonly bufferId?: number;
  readonly attachmentId?: number;
  readonly pid?: number;
  readonly detail: string;
  /**
   * The move (vfio_pci_dma_buf_move()) a MOVE_NOTIFY, ACK, FENCE or
   * MOVE_DONE belongs to: the sequence of the REVOKE or UNREVOKE that
   * started it, so a trace links a revoke to every notification and ack.
   */
  readonly moveId?: number;
  /** The move_notify a MOVE_NOTIFY sent and an ACK or FENCE settled. */
  readonly notificationId?: number;
}

/** An event before the hub numbers and stamps it. */
export type RegistryEventBody = Unnumbered<RegistryEvent>;

export type RegistryEventListener = (event: RegistryEvent) => void;

/** The registry's events, emitted as the state changes they describe happen. */
export class RegistryEvents extends OrderedEventHub<RegistryEvent> {}
