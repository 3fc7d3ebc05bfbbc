import type { ClientOptions } from '@grpc/grpc-js';

/**
 * Channel options of both session kinds. Keepalive lets the client notice a
 * registry that vanished without closing the connection (a partition, a
 * frozen host) about as soon as the registry notices the client: past that
 * the registry counts the process as exited, so the client must stop using
 * the memory too. grpc-js servers accept pings at this rate.
 */
export const CHANNEL_OPTIONS: Partial<ClientOptions> = {
  'grpc.keepalive_time_ms': 10_000,
  'grpc.keepalive_timeout_ms': 5_000,
  'grpc.keepalive_permit_without_calls': 1,
};

/** How long close() waits for the registry to finish the stream before cancelling it. */
export const CLOSE_TIMEOUT_MS = 5_000;

/** How long open() waits for the registry's first answer before giving up (ETIMEDOUT). */
export const DEFAULT_OPEN_TIMEOUT_MS = 10_000;
