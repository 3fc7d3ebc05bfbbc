import { OrderedEventHub, type Unnumbered } from '@p2p/events';

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
  | 'UNPIN_USER_PAGES';

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
export type RegistryEventBody = Unnumbered<RegistryEvent>;

export type RegistryEventListener = (event: RegistryEvent) => void;

/** The registry's events, emitted as the state changes they describe happen. */
export class RegistryEvents extends OrderedEventHub<RegistryEvent> {}
