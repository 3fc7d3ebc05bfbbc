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

/** The errnos of a link that is down: what a cut connection, a refused dial or a partition (a fault rule's ECONNRESET) says. */
const LINK_DOWN = new Set(['ECONNRESET', 'ECONNREFUSED', 'EHOSTUNREACH', 'ENETUNREACH', 'ESHUTDOWN', 'EAGAIN']);

/**
 * Whether a failed call may simply not have been taken: the peer was not
 * reached (EIO, a deadline with no answer: ETIMEDOUT) or the link to it is
 * down. A release the kernel cannot fail (a detach) is sent again on such
 * an error; any other is the peer's answer.
 */
export function callNotTaken(error: unknown): boolean {
  if (peerUnreachable(error)) return true;
  const errno = error instanceof ErrnoError ? error.errno : errnoOf(error);
  return errno === 'EIO' || errno === 'ETIMEDOUT' || (errno !== undefined && LINK_DOWN.has(errno));
}

/** A release the peer did not take is sent again after this long, doubling up to RESEND_MAX_MS. */
export const RESEND_MIN_MS = 100;
export const RESEND_MAX_MS = 2_000;

/**
 * A release the kernel cannot fail (a detach, an unpin) that the peer did
 * not take: sent again, RESEND_MIN_MS later and doubling up to
 * RESEND_MAX_MS, until the peer answers (any answer ends it: done, or
 * nothing left to release) or `live()` says there is nobody left to tell.
 * Meant to run in the background: it never rejects.
 */
export async function resendUntilTaken(send: () => Promise<unknown>, live: () => boolean = () => true): Promise<void> {
  for (let delayMs = RESEND_MIN_MS; ; delayMs = Math.min(2 * delayMs, RESEND_MAX_MS)) {
    await new Promise((resolve) => setTimeout(resolve, delayMs).unref());
    if (!live()) return;
    try {
      await send();
      return;
    } catch (error) {
      if (!callNotTaken(error)) return;
    }
  }
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
