import type { handleBidiStreamingCall } from '@grpc/grpc-js';
import { errno, ErrnoError } from '@p2p/errno';
import type { rdma } from '@p2p/proto';
import { decodeWqes, type DecodedSendWrs } from '../codec/wqe';
import type { VerbsContext } from '../context/verbs-context';
import type { OpenStreams } from './open-streams';
import type { VerbsCallers } from './verbs-callers';
import { postDecoded } from './post-result';
import { sendWrsFromWire } from './proto-verbs';

type Request = rdma.PostStreamRequest;
type Response = rdma.PostStreamResponse;

function decode(request: Request): DecodedSendWrs {
  if (request.wqes.length === 0) return sendWrsFromWire(request.wrs);
  if (request.wrs.length > 0) return { wrs: [], error: errno('EINVAL', 'a request carries wrs or packed wqes, not both') };
  return decodeWqes(request.wqes);
}

function failed(seq: bigint, posted: number, error: unknown): Response {
  const failure = error instanceof ErrnoError ? error : errno('EIO', error instanceof Error ? error.message : String(error));
  return { seq, posted, errno: failure.errno, message: failure.detail };
}

/**
 * PostStream: one ibv_post_send() per request, answered in order with how
 * many went in and, for a bad one, its errno; the stream stays open. The
 * context is looked up once per (pid, fd) and kept while it lives, as a
 * process's doorbell page stays mapped after its lookup: posting does not
 * enter the kernel.
 */
export function postStream(callers: VerbsCallers, streams: OpenStreams): handleBidiStreamingCall<Request, Response> {
  return (call) => {
    let open = true;
    // The stream's caller is proven once, when it opens.
    const caller = Promise.resolve(callers.caller(call));
    let queue: Promise<void> = caller.then(() => undefined, () => undefined);
    let cached: { readonly pid: number; readonly fd: number; readonly context: VerbsContext } | undefined;

    const contextOf = async (request: Request): Promise<VerbsContext> => {
      const { pid, contextFd: fd } = request;
      if (cached !== undefined && cached.pid === pid && cached.fd === fd && !cached.context.released) return cached.context;
      const context = await callers.contextAs(await caller, request, 'PostStream');
      cached = { pid, fd, context };
      return context;
    };

    const answer = async (request: Request): Promise<Response> => {
      try {
        const context = await contextOf(request);
        const result = postDecoded((wrs) => context.postSend(request.qpNum, wrs), decode(request));
        return result.error === undefined ? { seq: request.seq, posted: result.posted, errno: '', message: '' } : failed(request.seq, result.posted, result.error);
      } catch (error) {
        return failed(request.seq, 0, error);
      }
    };

    const end = (): void => {
      if (!open) return;
      open = false;
      call.end();
    };
    for (const event of ['cancelled', 'error', 'finish']) call.on(event, () => (open = false));
    call.on('data', (request: Request) => {
      queue = queue.then(async () => {
        const response = await answer(request);
        if (open) call.write(response);
      });
    });
    // The client is done posting: answer what is queued, then end.
    call.on('end', () => void queue.then(end));
    streams.track(call, end);
  };
}
