import type { ChannelCredentials, ClientOptions } from '@grpc/grpc-js';
import { bearerInterceptor, channelCredentials, loadPlatformSecrets, loadTlsConfig, type PlatformSecrets, type TlsConfig } from '@p2p/auth';

/**
 * The secrets of the platform whose segment directory is `shmDir`: the
 * services started on it read (or create) the same token files, so a test
 * holds the administrator's and the platform's credentials by reading them.
 */
export function platformSecretsOf(shmDir: string): PlatformSecrets {
  return loadPlatformSecrets(shmDir, {});
}

/** The channel credentials and options of a client calling as `token`. */
export interface ClientArgs {
  readonly credentials: ChannelCredentials;
  readonly options: Partial<ClientOptions>;
}

/** A client of the platform on `shmDir` as its administrator. */
export function asAdmin(shmDir: string): ClientArgs {
  return asToken(platformSecretsOf(shmDir).adminToken);
}

/** A client of the platform on `shmDir` as one of its services. */
export function asPlatform(shmDir: string): ClientArgs {
  return asToken(platformSecretsOf(shmDir).platformToken);
}

/**
 * A client that sends `token` on every call (undefined: an anonymous one),
 * over TLS when `tls` (default: P2P_TLS_* of this process) names a CA.
 */
export function asToken(token: string | undefined, tls: TlsConfig = loadTlsConfig()): ClientArgs {
  return { credentials: channelCredentials(tls), options: token === undefined ? {} : { interceptors: [bearerInterceptor(token)] } };
}
