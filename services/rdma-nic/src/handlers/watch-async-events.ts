import type { handleServerStreamingCall } from '@grpc/grpc-js';
import type { rdma } from '@p2p/proto';
import { contextStream } from './context-stream';
import type { OpenStreams } from './open-streams';
import type { VerbsCallers } from './verbs-callers';
import { asyncEventToWire } from './proto-verbs';

/** WatchAsyncEvents: ibv_get_async_event() as a stream; it ends when the context is closed. */
export function watchAsyncEvents(callers: VerbsCallers, streams: OpenStreams): handleServerStreamingCall<rdma.WatchAsyncEventsRequest, rdma.WatchAsyncEventsResponse> {
  return contextStream(streams, async (request, call) => {
    const context = await callers.context(call, request, 'WatchAsyncEvents');
    return context.watchAsyncEvents({ event: (event) => void call.write(asyncEventToWire(event)), end: () => call.end() });
  });
}
