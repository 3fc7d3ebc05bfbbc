import type { ServerDuplexStream } from '@grpc/grpc-js';
import { errno, ErrnoError, isErrnoName } from '@p2p/errno';
import { dmabuf } from '@p2p/proto';
import { failStream, whenStreamEnds } from '@p2p/server';
import type { ClosedFd, FileOwner, OwnerAttach, OwnerAttachmentRef, OwnerExtent, Registry } from '../index';
import { extentFromWire, mapTypeToWire } from './wire';

type OwnerStream = ServerDuplexStream<dmabuf.OpenOwnerSessionRequest, dmabuf.OpenOwnerSessionResponse>;

export interface OwnerSessionOptions {
  /** The directory this registry maps the owner's segments from. */
  directory: string;
  incarnation: string;
  /** How long an owner may take to answer one of its ops before it fails with ETIMEDOUT. */
  callTimeoutMs: number;
}

/**
 * OpenOwnerSession: a service that owns files. Its requests (create a file,
 * export a dma-buf, move one) are answered on the stream in any order,
 * correlated by request_id; the registry's calls into it (the exporter ops,
 * release, and fd closes for an owner that asked for them) go out as
 * OwnerCall and come back as OwnerReply. The stream's end is the owner's
 * death: its dma-bufs are revoked for good.
 */
export function ownerSessionHandler(registry: Registry, options: OwnerSessionOptions, live: Set<OwnerStream>) {
  return (call: OwnerStream): void => {
    let name: string | undefined;
    let nextCallId = 1n;
    const pending = new Map<bigint, { resolve: (reply: dmabuf.OwnerReply) => void; reject: (error: Error) => void; timer: NodeJS.Timeout }>();
    live.add(call);
    // Credentials die with their process: owners caching them hear of every exit.
    const unsubscribe = registry.onProcessExit((pid) => call.write({ response: { $case: 'processExited', value: { pid } } }));
    whenStreamEnds(call, unsubscribe);

    const invoke = (op: dmabuf.OwnerOp, fields: Partial<dmabuf.OwnerCall>): Promise<dmabuf.OwnerReply> =>
      new Promise((resolve, reject) => {
        if (name === undefined || !live.has(call)) {
          reject(errno('ESHUTDOWN', 'the owner session has ended'));
          return;
        }
        const callId = nextCallId++;
        const timer = setTimeout(() => {
          pending.delete(callId);
          reject(errno('ETIMEDOUT', `owner ${name} did not answer ${dmabuf.OwnerOp[op]} within ${options.callTimeoutMs} ms`));
        }, options.callTimeoutMs);
        pending.set(callId, { resolve, reject, timer });
        call.write({ response: { $case: 'call', value: dmabuf.OwnerCall.fromPartial({ ...fields, callId, op }) } });
      });
    const checked = async (op: dmabuf.OwnerOp, fields: Partial<dmabuf.OwnerCall>): Promise<dmabuf.OwnerReply> => {
      const reply = await invoke(op, fields);
      if (reply.errno !== '') {
        throw new ErrnoError(isErrnoName(reply.errno) ? reply.errno : 'EIO', reply.detail || `${dmabuf.OwnerOp[op]} failed`);
      }
      return reply;
    };
    const ref = (a: OwnerAttachmentRef): Partial<dmabuf.OwnerCall> => ({
      fileId: BigInt(a.bufferId),
      handle: a.handle,
      attachmentId: BigInt(a.attachmentId),
      importerBdf: a.importerBdf,
      peer2peer: a.peer2peer,
    });
    const extents = (reply: dmabuf.OwnerReply): OwnerExtent[] => reply.extents.map(extentFromWire);
    const voidOp = (op: dmabuf.OwnerOp) => async (a: OwnerAttachmentRef): Promise<void> => {
      await checked(op, ref(a));
    };

    const owner = (registered: dmabuf.RegisterOwner): FileOwner => {
      const absent = absentOps(registered.absentOps);
      /** An op the owner does not implement succeeds at once, as the dma-buf core skips a NULL op. */
      const optional = <A>(op: dmabuf.OwnerOp, call: (a: A) => Promise<void>): ((a: A) => Promise<void>) => (absent.has(op) ? async () => undefined : call);
      return {
        name: registered.name,
        shmId: registered.shm?.id ?? '',
        directory: options.directory,
        attach: optional<OwnerAttach>(dmabuf.OwnerOp.OWNER_OP_ATTACH, async (a) => {
          await checked(dmabuf.OwnerOp.OWNER_OP_ATTACH, { ...ref(a), importerPid: a.importerPid, dynamic: a.dynamic });
        }),
        detach: optional(dmabuf.OwnerOp.OWNER_OP_DETACH, voidOp(dmabuf.OwnerOp.OWNER_OP_DETACH)),
        unmap: optional(dmabuf.OwnerOp.OWNER_OP_UNMAP, voidOp(dmabuf.OwnerOp.OWNER_OP_UNMAP)),
        pin: optional(dmabuf.OwnerOp.OWNER_OP_PIN, voidOp(dmabuf.OwnerOp.OWNER_OP_PIN)),
        unpin: optional(dmabuf.OwnerOp.OWNER_OP_UNPIN, voidOp(dmabuf.OwnerOp.OWNER_OP_UNPIN)),
        map: async (a) => extents(await checked(dmabuf.OwnerOp.OWNER_OP_MAP, { ...ref(a), mapType: mapTypeToWire(a.mapType) })),
        release: async (file) => {
          await checked(dmabuf.OwnerOp.OWNER_OP_RELEASE, { fileId: BigInt(file.fileId), handle: file.handle });
        },
        fence: async (bufferId) => {
          await checked(dmabuf.OwnerOp.OWNER_OP_FENCE, { fileId: BigInt(bufferId) });
        },
        cpuExtents: async (bufferId) => extents(await checked(dmabuf.OwnerOp.OWNER_OP_CPU_MAP, { fileId: BigInt(bufferId) })),
        // Only an owner that remembers fds asked for their closes: the others pay no round trip per close.
        ...(registered.notifyFdClosed
          ? {
              fdClosed: async (closed: ClosedFd) => {
                await checked(dmabuf.OwnerOp.OWNER_OP_FD_CLOSED, { pid: closed.pid, fd: closed.fd, fileId: BigInt(closed.fileId), handle: closed.handle });
              },
            }
          : {}),
      };
    };

    const fail = (requestId: bigint, error: unknown): void => {
      const e = error instanceof ErrnoError ? error : new ErrnoError('EIO', error instanceof Error ? error.message : String(error));
      call.write({ response: { $case: 'failed', value: { requestId, errno: e.errno, detail: e.detail } } });
    };

    const handle = async (request: dmabuf.OpenOwnerSessionRequest): Promise<void> => {
      const r = request.request;
      if (!r) return;
      if (r.$case === 'register') {
        if (name !== undefined) throw errno('EINVAL', 'this owner session is already registered');
        if (!r.value.name) throw errno('EINVAL', 'an owner needs a name');
        registry.registerOwner(owner(r.value));
        name = r.value.name;
        call.write({ response: { $case: 'registered', value: { incarnation: options.incarnation } } });
        return;
      }
      if (r.$case === 'reply') {
        const waiter = pending.get(r.value.callId);
        if (!waiter) return;
        pending.delete(r.value.callId);
        clearTimeout(waiter.timer);
        waiter.resolve(r.value);
        return;
      }
      const requestId = r.value.requestId;
      try {
        if (name === undefined) throw errno('EINVAL', 'register the owner before anything else');
        if (r.$case === 'createFile') {
          const created = registry.createFile(name, r.value.pid, r.value.handle, r.value.openFlags);
          call.write({ response: { $case: 'fileCreated', value: { requestId, fileId: BigInt(created.fileId), fd: created.fd } } });
        } else if (r.$case === 'export') {
          const v = r.value;
          const exported = registry.exportDmaBuf(name, {
            pid: v.pid,
            size: toSize(v.size),
            openFlags: v.openFlags,
            revoked: v.revoked,
            cpuAccess: v.cpuAccess,
            providerBdf: v.providerBdf || undefined,
            allowPin: v.allowPin,
            requirePeer2peer: v.requirePeer2peer,
            handle: v.handle,
          });
          call.write({ response: { $case: 'exported', value: { requestId, bufferId: BigInt(exported.bufferId), fd: exported.fd } } });
        } else {
          const moved = await registry.move(name, Number(r.value.bufferId), { revoked: r.value.revoked, permanent: r.value.permanent });
          call.write({ response: { $case: 'moved', value: { requestId, bufferId: r.value.bufferId, notified: moved.notified, fenced: moved.fenced } } });
        }
      } catch (error) {
        fail(requestId, error);
      }
    };

    whenStreamEnds(call, () => {
      live.delete(call);
      for (const waiter of pending.values()) {
        clearTimeout(waiter.timer);
        waiter.reject(errno('ESHUTDOWN', `owner ${name ?? '(unregistered)'} went away`));
      }
      pending.clear();
      if (name !== undefined) void registry.ownerGone(name).catch(() => undefined);
    });
    call.on('end', () => call.end());
    call.on('data', (request: dmabuf.OpenOwnerSessionRequest) => {
      handle(request).catch((error: unknown) => failStream(call, error));
    });
  };
}

function toSize(size: bigint): number {
  if (size > BigInt(Number.MAX_SAFE_INTEGER)) throw errno('EINVAL', `size ${size} is too large`);
  return Number(size);
}

/** The optional ops an owner may leave out. */
const OPTIONAL_OPS: ReadonlySet<dmabuf.OwnerOp> = new Set([
  dmabuf.OwnerOp.OWNER_OP_ATTACH,
  dmabuf.OwnerOp.OWNER_OP_DETACH,
  dmabuf.OwnerOp.OWNER_OP_PIN,
  dmabuf.OwnerOp.OWNER_OP_UNPIN,
  dmabuf.OwnerOp.OWNER_OP_UNMAP,
]);

/** RegisterOwner.absent_ops, checked: EINVAL for an op that is not optional (map, release, fence...). */
function absentOps(ops: readonly dmabuf.OwnerOp[]): ReadonlySet<dmabuf.OwnerOp> {
  const bad = ops.find((op) => !OPTIONAL_OPS.has(op));
  if (bad !== undefined) throw errno('EINVAL', `absent_ops names ${dmabuf.OwnerOp[bad] ?? bad}, which an owner must implement`);
  return new Set(ops);
}
