import type { handleServerStreamingCall } from '@grpc/grpc-js';
import type { rdma } from '@p2p/proto';
import { encodeCqes } from '@p2p/verbs';
import type { WorkCompletion } from '../cq/work-completion';
import { contextStream } from './context-stream';
import type { OpenStreams } from './open-streams';
import type { VerbsCallers } from './verbs-callers';
import { wcToWire } from './proto-verbs';

type Response = rdma.WatchCompletionsResponse;

function batch(wcs: readonly WorkCompletion[], packed: boolean): Response {
  return packed ? { completions: [], packedCqes: encodeCqes(wcs) } : { completions: wcs.map(wcToWire), packedCqes: Buffer.alloc(0) };
}

/**
 * WatchCompletions: the CQ's completions as they are written, one message
 * per event-loop turn; the stream ends when the CQ is destroyed. A client
 * that stops reading stops the polling (the stream's write backpressure).
 */
export function watchCompletions(callers: VerbsCallers, streams: OpenStreams): handleServerStreamingCall<rdma.WatchCompletionsRequest, Response> {
  return contextStream(streams, async (request, call) => {
    const context = await callers.context(call, request, 'WatchCompletions');
    const watcher = context.watchCompletions(request.cqHandle, { send: (wcs) => call.write(batch(wcs, request.packed)), end: () => call.end() });
    call.on('drain', () => watcher.resume());
    return () => watcher.stop();
  });
}
