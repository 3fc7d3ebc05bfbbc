import { Channel, type ChannelOptions } from '@grpc/grpc-js';
import { channelCredentials, PLAINTEXT, type TlsConfig } from '@p2p/auth';
import { type Client, createClientFactory, type DefaultCallOptions, type NormalizedServiceDefinition, type TsProtoServiceDefinition } from 'nice-grpc';
import { type DeadlineOptions, deadlineMiddleware } from 'nice-grpc-client-middleware-deadline';
import { type RetryOptions, retryMiddleware } from 'nice-grpc-client-middleware-retry';
import { Status } from 'nice-grpc-common';
import { errorDetailsClientMiddleware } from 'nice-grpc-error-details';
import { credentialMiddleware, errnoMiddleware } from './middleware';

/** How long a call to a peer may take unless the caller says otherwise. */
export const DEFAULT_DEADLINE_MS = 10_000;

/**
 * Retries of methods the proto marks `idempotency_level = NO_SIDE_EFFECTS`
 * (reads: ResolveFd, GetFunction, ConfigRead...), and only on UNAVAILABLE:
 * the peer could not be reached, or said EAGAIN (ECONNRESET...): twice, 20
 * then 40 ms later (with jitter); the last attempt's errno is the caller's.
 * A method with side effects is never retried: a lost answer does not mean
 * a lost request.
 */
const RETRY: RetryOptions = {
  retryMaxAttempts: 2,
  retryBaseDelayMs: 20,
  retryMaxDelayMs: 200,
  retryableStatuses: [Status.UNAVAILABLE],
};

export interface PeerOptions {
  /** The peer's name in errors ("pci-emu ConfigRead: ..."). */
  readonly name: string;
  /** TLS to the peer; default plaintext. */
  readonly tls?: TlsConfig;
  /**
   * The credential every call carries: a platform secret, a process's
   * session credential, or a function read per call (undefined: anonymous).
   */
  readonly token?: string | (() => string | undefined);
  /** Each unary call's deadline in ms (a call's own `deadline` option wins); default 10 s. Streams have none. */
  readonly deadlineMs?: number;
  /** More grpc-js channel options: message limits, the name a certificate must carry. */
  readonly channelOptions?: ChannelOptions;
}

/** Call options every peer client takes, beside nice-grpc's own (metadata, signal, onTrailer). */
export type PeerCallOptions = DeadlineOptions & RetryOptions;

/** A client of one peer service and the channel it owns. */
export interface Peer<Service extends TsProtoServiceDefinition> {
  readonly client: Client<Service, PeerCallOptions>;
  /** The grpc-js channel, for a stream client of the same peer (`channelOverride`). */
  readonly channel: Channel;
  close(): void;
}

/**
 * The one way a service (or a client library) calls another: a nice-grpc
 * client whose every call carries the credential, has a deadline, is retried
 * only when the proto says it has no side effects and the peer was
 * unreachable, and fails with an ErrnoError that keeps the peer's errno.
 * `definition` is ts-proto's generic definition (`pci.PciEmuServiceDefinition`).
 */
export function connectPeer<Service extends TsProtoServiceDefinition>(definition: Service, address: string, options: PeerOptions): Peer<Service> {
  const channel = new Channel(address, channelCredentials(options.tls ?? PLAINTEXT), options.channelOptions ?? {});
  const token = options.token;
  const current = typeof token === 'function' ? token : () => token;
  const client = createClientFactory()
    .use(credentialMiddleware(current))
    .use(errorDetailsClientMiddleware)
    .use(retryMiddleware)
    .use(deadlineMiddleware)
    .use(errnoMiddleware(options.name))
    .create(definition, channel, defaults(definition, options.deadlineMs ?? DEFAULT_DEADLINE_MS));
  return { client, channel, close: () => channel.close() };
}

/** Every method's defaults: retries, and for unary methods a deadline (a duration, made a date per call). */
function defaults<Service extends TsProtoServiceDefinition>(definition: Service, deadlineMs: number): DefaultCallOptions<NormalizedServiceDefinition<Service>, PeerCallOptions> {
  const unary = Object.entries(definition.methods).filter(([, method]) => !method.requestStream && !method.responseStream);
  return { '*': RETRY, ...Object.fromEntries(unary.map(([name]) => [name, { deadline: deadlineMs }])) } as DefaultCallOptions<NormalizedServiceDefinition<Service>, PeerCallOptions>;
}
