import type { handleUnaryCall, ServiceError } from '@grpc/grpc-js';
import type { ErrnoError } from '@p2p/errno';
import type { CallWithMetadata } from '@p2p/server';
import { toServiceError } from '@p2p/status';
import type { PostResult } from '../qp/work-request';

/** The trailer of a failed PostSend or PostRecv: how many work requests went in before bad_wr. */
export const POSTED_TRAILER = 'p2p-posted';

/**
 * ibv_post_send()/ibv_post_recv() failing: the errno status, plus the
 * count of work requests posted before bad_wr (0 when the call failed
 * before any, a bad context or QP).
 */
export function postFailure(error: unknown, posted: number): ServiceError {
  const failure = toServiceError(error);
  failure.metadata.set(POSTED_TRAILER, String(posted));
  return failure;
}

/** A unary post: `{ posted }`, or the errno status with the p2p-posted trailer. */
export function postCall<Req>(post: (request: Req, call: CallWithMetadata) => Promise<PostResult>): handleUnaryCall<Req, { posted: number }> {
  return (call, callback) => {
    post(call.request, call).then(
      (result) => (result.error === undefined ? callback(null, { posted: result.posted }) : callback(postFailure(result.error, result.posted))),
      (error: unknown) => callback(postFailure(error, 0)),
    );
  };
}

/**
 * Posts what was read off the wire: the work requests before the first one
 * that could not be read go in, and that one is bad_wr, unless the provider
 * refused an earlier one first.
 */
export function postDecoded<W>(post: (wrs: W[]) => PostResult, decoded: { readonly wrs: W[]; readonly error?: ErrnoError }): PostResult {
  const result = post(decoded.wrs);
  return result.error !== undefined || decoded.error === undefined ? result : { posted: result.posted, error: decoded.error };
}
