import type { ChannelCredentials, ClientOptions } from '@grpc/grpc-js';
import { credentials } from '@grpc/grpc-js';
import { bearerInterceptor, loadPlatformSecrets, type PlatformSecrets } from '@p2p/auth';

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

/** A client that sends `token` on every call; undefined for an anonymous one. */
export function asToken(token: string | undefined): ClientArgs {
  return { credentials: credentials.createInsecure(), options: token === undefined ? {} : { interceptors: [bearerInterceptor(token)] } };
}
