import type { dmabuf } from '@p2p/proto';
import type { Peer } from '@p2p/rpc';

/** What a session routes to one attachment's importer. */
export interface AttachmentHandlers {
  moveNotify(notice: dmabuf.MoveNotify): void;
  fenced(notice: dmabuf.AttachmentFenced): void;
  /** The session is gone (lost or closed): drop every mapping now. */
  sessionEnded(): void;
}

/** The registry's unary methods, through @p2p/rpc: credential, deadline, the registry's errno. */
export type RegistryClient = Peer<typeof dmabuf.DmaBufRegistryServiceDefinition>['client'];

/**
 * The part of a RegistrySession its importers use; kept out of the public API
 * so that only importers route notices and make attachment calls.
 */
export interface SessionPort {
  readonly pid: number;
  readonly shmDir: string;
  /** The registry's unary methods. */
  readonly registry: RegistryClient;
  /** The same channel as a grpc-js client, for the attachment streams (ReadAttachment, WriteAttachment). */
  readonly client: dmabuf.DmaBufRegistryServiceClient;
  /** False once the session was lost or closed. */
  usable(): boolean;
  /**
   * Runs a unary call. Rejects with ESHUTDOWN if the session is unusable when
   * the call starts or when its answer arrives (an answer that arrives after
   * the session was lost must not be acted on), else with the call's error.
   */
  call<Res>(call: () => Promise<Res>): Promise<Res>;
  /** Throws ESHUTDOWN if the session was lost or closed. */
  check(): void;
  /** Routes the notices of `attachmentId` to `handlers` until the returned function is called. */
  route(attachmentId: bigint, handlers: AttachmentHandlers): () => void;
  /**
   * Acks a move_notify on the session stream itself (the fast path: no call
   * of its own). A refusal comes back later as the session's 'error' event.
   */
  ackOnStream(notificationId: bigint): void;
  /** Reports a failure of background work (a move_notify hook, an ack) as the session's 'error' event. */
  reportError(error: unknown): void;
}
