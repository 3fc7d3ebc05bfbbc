import type { ServerDuplexStream } from '@grpc/grpc-js';
import { errno, ErrnoError } from '@p2p/errno';
import type { dmabuf } from '@p2p/proto';
import { failStream, whenStreamEnds } from '@p2p/server';
import type { Registry } from '../index';

/** Longer than any comm (TASK_COMM_LEN is 16), short enough for every listing. */
const MAX_PROCESS_NAME = 64;

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
    const acknowledge = (self: number, notificationId: bigint): void => {
      try {
        registry.ack(self, Number(notificationId));
      } catch (error) {
        const failure = error instanceof ErrnoError ? error : new ErrnoError('EIO', String(error));
        call.write({ response: { $case: 'ackRejected', value: { notificationId, errno: failure.errno, detail: failure.detail } } });
      }
    };
    whenStreamEnds(call, () => {
      live.delete(call);
      if (pid !== undefined) void registry.exitProcess(pid).catch(() => undefined);
    });
    // A client half-close is a clean exit: close our side too.
    call.on('end', () => call.end());
    call.on('data', (request: dmabuf.OpenSessionRequest) => {
      try {
        receive(request);
      } catch (error) {
        failStream(call, error);
      }
    });
    const receive = (request: dmabuf.OpenSessionRequest): void => {
      const r = request.request;
      if (pid !== undefined) {
        if (r?.$case === 'ack') acknowledge(pid, r.value.notificationId);
        return;
      }
      if (r?.$case !== 'hello') {
        failStream(call, errno('EINVAL', 'the first message of a session must be hello'));
        return;
      }
      const name = r.value.name || 'anonymous';
      if (name.length > MAX_PROCESS_NAME) throw errno('EINVAL', `a process name has at most ${MAX_PROCESS_NAME} characters (this one ${name.length})`);
      const opened = registry.openSession(name, {
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
      pid = opened.pid;
      call.write({ response: { $case: 'opened', value: { pid, incarnation, credential: opened.credential } } });
    };
  };
}
