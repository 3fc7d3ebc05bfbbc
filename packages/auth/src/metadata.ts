import { type Interceptor, InterceptingCall, Metadata } from '@grpc/grpc-js';

/** The metadata key every credential travels in, as `Bearer <token>`. */
export const AUTHORIZATION_KEY = 'authorization';

const BEARER = /^Bearer ([\x21-\x7e]{1,512})$/;

/** The bearer token of a call's metadata, if it carries exactly one well-formed one. */
export function bearerOf(metadata: Metadata): string | undefined {
  const values = metadata.get(AUTHORIZATION_KEY);
  if (values.length !== 1 || typeof values[0] !== 'string') return undefined;
  return BEARER.exec(values[0])?.[1];
}

/** Metadata carrying `token`, for one call. */
export function bearerMetadata(token: string): Metadata {
  const metadata = new Metadata();
  metadata.set(AUTHORIZATION_KEY, `Bearer ${token}`);
  return metadata;
}

/**
 * A client interceptor that sends a credential on every call of a channel.
 * `token` is read per call, so a client can be made before the session that
 * proves it is open; a call made while it yields undefined goes anonymous.
 */
export function bearerInterceptor(token: string | (() => string | undefined)): Interceptor {
  const current = typeof token === 'string' ? () => token : token;
  return (options, nextCall) =>
    new InterceptingCall(nextCall(options), {
      start: (metadata, listener, next) => {
        const value = current();
        if (value !== undefined && metadata.get(AUTHORIZATION_KEY).length === 0) metadata.set(AUTHORIZATION_KEY, `Bearer ${value}`);
        next(metadata, listener);
      },
    });
}
