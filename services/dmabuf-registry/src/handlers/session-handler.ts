import type { ServerDuplexStream } from '@grpc/grpc-js';
import { errno } from '@p2p/errno';
import type { dmabuf } from '@p2p/proto';
import { failStream, whenStreamEnds } from '@p2p/server';
import type { Registry } from '../index';

type SessionStream = ServerDuplexStream<dmabuf.OpenSessionRequest, dmabuf.OpenSessionResponse>;

/**
 * OpenSession: a process. The first message names it; the registry answers
 * with its pid and from then on writes its move_notify and fence notices to
 * the stream. Whatever ends the stream (close, crash, keepalive timeout, the
 * registry's own shutdown) is process exit: every fd it held is closed.
 */
export function sessionHandler(registry: Registry, incarnation: string, live: Set<SessionStream>) {
  return (call: SessionStream): void => {
    let pid: number | undefined;
    live.add(call);
    whenStreamEnds(call, () => {
      live.delete(call);
      if (pid !== undefined) void registry.exitProcess(pid).catch(() => undefined);
    });
    // A client half-close is a clean exit: close our side too.
    call.on('end', () => call.end());
    call.on('data', (request: dmabuf.OpenSessionRequest) => {
      if (pid !== undefined) return;
      if (request.request?.$case !== 'hello') {
        failStream(call, errno('EINVAL', 'the first message of a session must be hello'));
        return;
      }
      pid = registry.openProcess(request.request.value.name || 'anonymous', {
        moveNotify: (notice) =>
          call.write({
            response: {
              $case: 'moveNotify',
              value: {
                notificationId: BigInt(notice.notificationId),
                attachmentId: BigInt(notice.attachmentId),
                bufferId: BigInt(notice.bufferId),
                timeoutMs: notice.timeoutMs,
              },
            },
          }),
        fenced: (notice) =>
          call.write({ response: { $case: 'fenced', value: { attachmentId: BigInt(notice.attachmentId), bufferId: BigInt(notice.bufferId) } } }),
      });
      call.write({ response: { $case: 'opened', value: { pid, incarnation } } });
    });
  };
}
