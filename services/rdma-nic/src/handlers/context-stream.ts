import { Metadata, type handleServerStreamingCall, type ServerWritableStream } from '@grpc/grpc-js';
import { failStream, whenStreamEnds } from '@p2p/server';
import type { OpenStreams } from './open-streams';

/**
 * A server stream on a verbs context, like serverStream() but with an
 * asynchronous subscribe (the context is looked up in the registry first):
 * `subscribe` resolves to the unsubscribe, or rejects to end the call with
 * its errno. Headers go out once the subscription is in place, so a client
 * that waits for them misses nothing after; the server ends the stream at
 * shutdown.
 */
export function contextStream<Req, Res>(
  streams: OpenStreams,
  subscribe: (request: Req, call: ServerWritableStream<Req, Res>) => Promise<() => void>,
): handleServerStreamingCall<Req, Res> {
  return (call) => {
    subscribe(call.request, call).then(
      (unsubscribe) => {
        if (call.cancelled) {
          unsubscribe();
          return;
        }
        call.sendMetadata(new Metadata());
        streams.track(call, () => call.end());
        whenStreamEnds(call, unsubscribe);
      },
      (error: unknown) => failStream(call, error),
    );
  };
}
