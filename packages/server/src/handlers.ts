import { type handleServerStreamingCall, type handleUnaryCall, Metadata, type ServerUnaryCall, type ServerWritableStream } from '@grpc/grpc-js';
import { toServiceError } from '@p2p/status';

/**
 * Adapts a domain call to a grpc-js unary handler: the result becomes the
 * response, a thrown ErrnoError the status carrying its errno.
 */
export function unary<Req, Res>(fn: (request: Req, call: ServerUnaryCall<Req, Res>) => Res | Promise<Res>): handleUnaryCall<Req, Res> {
  return (call, callback) => {
    let result: Res | Promise<Res>;
    try {
      result = fn(call.request, call);
    } catch (error) {
      callback(toServiceError(error));
      return;
    }
    if (result instanceof Promise) result.then((value) => callback(null, value), (error: unknown) => callback(toServiceError(error)));
    else callback(null, result);
  };
}

/**
 * Adapts a server-streaming call: `fn` validates the request (throwing ends
 * the call with its errno), subscribes, and returns an unsubscribe function
 * run when the client goes away or the stream ends. Headers go out as soon as
 * the subscription is in place, so a client that waits for them (the
 * 'metadata' event) knows no later event will be missed.
 */
export function serverStream<Req, Res>(
  fn: (request: Req, call: ServerWritableStream<Req, Res>) => () => void,
): handleServerStreamingCall<Req, Res> {
  return (call) => {
    let unsubscribe: () => void;
    try {
      unsubscribe = fn(call.request, call);
    } catch (error) {
      failStream(call, error);
      return;
    }
    call.sendMetadata(new Metadata());
    whenStreamEnds(call, unsubscribe);
  };
}

/**
 * Runs `fn` once when a server stream ends for any reason: the client
 * half-closed or cancelled, the connection died (keepalive), or the server
 * ended it. For a session stream, that moment is the peer's death.
 */
export function whenStreamEnds(call: NodeJS.EventEmitter, fn: () => void): void {
  let done = false;
  const once = (): void => {
    if (done) return;
    done = true;
    fn();
  };
  for (const event of ['end', 'finish', 'error', 'cancelled', 'close']) call.on(event, once);
}

/**
 * Ends a server or bidi stream with the errno status of `error`. grpc-js
 * sends a stream's status from its 'error' event; destroy() would drop it and
 * leave the client waiting.
 */
export function failStream(call: NodeJS.EventEmitter, error: unknown): void {
  call.emit('error', toServiceError(error));
}
