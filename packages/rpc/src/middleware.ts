import { AUTHORIZATION_KEY } from '@p2p/auth';
import { ErrnoError, type ErrnoName } from '@p2p/errno';
import { errnoOf } from '@p2p/status';
import { ClientError, type ClientMiddleware, Metadata, Status } from 'nice-grpc-common';

/**
 * Sends `token` as the call's bearer credential (`authorization: Bearer`),
 * read per call so a client can exist before the session that proves it; a
 * call that brings its own credential keeps it, and one made while `token`
 * yields undefined goes anonymous.
 */
export function credentialMiddleware(token: () => string | undefined): ClientMiddleware {
  return async function* credential(call, options) {
    const value = token();
    if (value === undefined || options.metadata?.has(AUTHORIZATION_KEY)) return yield* call.next(call.request, options);
    const metadata = Metadata(options.metadata).set(AUTHORIZATION_KEY, `Bearer ${value}`);
    return yield* call.next(call.request, { ...options, metadata });
  };
}

/** A failed call to a peer: its errno, and whether the peer itself answered with it. */
export class PeerError extends ErrnoError {
  constructor(
    errno: ErrnoName,
    detail: string,
    /** The gRPC status code of the failure. */
    readonly code: Status,
    /** False when no answer came: the peer could not be reached, or the deadline passed. */
    readonly answered: boolean,
  ) {
    super(errno, detail);
  }
}

/**
 * Whether `error` says the peer was never reached (as opposed to refusing):
 * worth trying again while it may still be starting. A PeerError without an
 * answer, or a grpc-js error without an errno.
 */
export function peerUnreachable(error: unknown): boolean {
  if (error instanceof PeerError) return !error.answered;
  return !(error instanceof ErrnoError) && errnoOf(error) === undefined;
}

/**
 * Turns a failed call into a PeerError naming the peer and the method: the
 * peer's errno kept (an EBADF from the registry stays EBADF); a deadline
 * that passed without an answer is ETIMEDOUT; a peer that could not be
 * reached, or answered without an errno, is EIO. Runs outside the
 * error-details middleware, whose RichClientError carries the errno.
 */
export function errnoMiddleware(peer: string): ClientMiddleware {
  return async function* peerErrno(call, options) {
    try {
      return yield* call.next(call.request, options);
    } catch (error) {
      if (!(error instanceof ClientError)) throw error;
      const method = call.method.path.slice(call.method.path.lastIndexOf('/') + 1);
      const answer = errnoOf(error);
      const errno = answer ?? (error.code === Status.DEADLINE_EXCEEDED ? 'ETIMEDOUT' : 'EIO');
      throw new PeerError(errno, `${peer} ${method}: ${error.details}`, error.code, answer !== undefined);
    }
  };
}
