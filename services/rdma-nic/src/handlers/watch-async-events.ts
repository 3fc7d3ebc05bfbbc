import type { handleServerStreamingCall } from '@grpc/grpc-js';
import type { rdma } from '@p2p/proto';
import type { RdmaDevice } from '../context/rdma-device';
import { contextStream } from './context-stream';
import type { OpenStreams } from './open-streams';
import { asyncEventToWire } from './wire-verbs';

/** WatchAsyncEvents: ibv_get_async_event() as a stream; it ends when the context is closed. */
export function watchAsyncEvents(device: RdmaDevice, streams: OpenStreams): handleServerStreamingCall<rdma.WatchAsyncEventsRequest, rdma.WatchAsyncEventsResponse> {
  return contextStream(streams, async (request, call) => {
    const context = await device.context(request.pid, request.contextFd);
    return context.watchAsyncEvents({ event: (event) => void call.write(asyncEventToWire(event)), end: () => call.end() });
  });
}
