import type { Metadata, ServerDuplexStream, ServerReadableStream, ServerWritableStream, sendUnaryData } from '@grpc/grpc-js';
import { errno } from '@p2p/errno';
import { dmabuf } from '@p2p/proto';
import { type Authenticator, actingPid, type Caller, maySee } from '@p2p/auth';
import { actingPidOf, callerOf, failStream, type MessageLimit, receivePaced, sendPaced, serverStream, unary } from '@p2p/server';
import { toServiceError } from '@p2p/status';
import type { Registry } from '../index';
import { ownerSessionHandler, type OwnerSessionOptions } from './owner-session-handler';
import { sessionHandler } from './session-handler';
import { bufInfoToWire, eventToWire, extentToWire, fileKindToWire, mapTypeToWire, toNumber, transportToWire, userPageExtentToWire, vmaToWire } from './wire';

/** Streams a server keeps open; ended on shutdown so the drain completes. */
export interface LiveStreams {
  sessions: Set<ServerDuplexStream<dmabuf.OpenSessionRequest, dmabuf.OpenSessionResponse>>;
  owners: Set<ServerDuplexStream<dmabuf.OpenOwnerSessionRequest, dmabuf.OpenOwnerSessionResponse>>;
  watchers: Set<ServerWritableStream<dmabuf.WatchEventsRequest, dmabuf.WatchEventsResponse>>;
}

/** Chunk size of the streamed fallback, unless the message limit is smaller. */
const STREAM_CHUNK = 1024 * 1024;

/**
 * DmaBufRegistryService: decode, call the registry, encode. Every rule lives
 * in the registry; a thrown ErrnoError becomes the status. `limit` is the
 * server's message limit: a CpuRead whose answer cannot fit it is refused
 * before any work, and no ReadAttachment chunk is larger.
 */
export function registryHandlers(
  registry: Registry,
  options: OwnerSessionOptions,
  live: LiveStreams,
  limit: MessageLimit,
  auth: Authenticator,
): dmabuf.DmaBufRegistryServiceServer {
  /**
   * The pid a call acts in (see actingPid): the registry knows every
   * credential, so this never waits. A refusal rejects rather than throws,
   * so a stream handler that chains on it (ReadAttachment) ends with the
   * errno instead of throwing into grpc-js, which answers UNKNOWN.
   */
  const as = async (call: { metadata: Metadata }, pid: number, what: string): Promise<number> => actingPidOf(auth, call, pid, what);
  return {
    openSession: sessionHandler(registry, options.incarnation, live.sessions),
    openOwnerSession: ownerSessionHandler(registry, options, live.owners),

    dupFd: unary(async (req: dmabuf.DupFdRequest, call) => ({ fd: registry.dup(await as(call, req.pid, 'DupFd'), req.fd) })),
    closeFd: unary(async (req: dmabuf.CloseFdRequest, call) => {
      await registry.close(await as(call, req.pid, 'CloseFd'), req.fd);
      return {};
    }),
    sendFd: unary(async (req: dmabuf.SendFdRequest, call) => ({ token: registry.sendFd(await as(call, req.pid, 'SendFd'), req.fd, req.toPid) })),
    receiveFd: unary(async (req: dmabuf.ReceiveFdRequest, call) => ({ fd: registry.receiveFd(await as(call, req.pid, 'ReceiveFd'), req.token) })),
    resolveCredential: unary((req: dmabuf.ResolveCredentialRequest) => {
      const pid = registry.resolveCredential(req.credential);
      if (pid === undefined) throw errno('EPERM', 'the credential proves no live process of this registry incarnation');
      return { pid, incarnation: options.incarnation };
    }),
    resolveFd: unary(async (req: dmabuf.ResolveFdRequest, call) => {
      const file = registry.resolveFd(await as(call, req.pid, 'ResolveFd'), req.fd);
      return { kind: fileKindToWire(file.kind), fileId: BigInt(file.fileId), owner: file.owner, handle: file.handle, openFlags: file.openFlags };
    }),

    attach: unary(async (req: dmabuf.AttachRequest, call) => {
      const caller = await callerOf(auth, call);
      const pid = actingPid(caller, req.pid, 'Attach');
      const attached = await registry.attach({
        pid,
        fd: req.fd,
        importerPid: importerPidOf(caller, pid, req.importerPid),
        importerBdf: req.importerBdf,
        dynamic: req.dynamic,
        peer2peer: req.peer2peer,
        shmId: req.shm?.id ?? '',
      });
      return { attachmentId: BigInt(attached.attachmentId), bufferId: BigInt(attached.bufferId), size: BigInt(attached.size) };
    }),
    detach: unary(async (req: dmabuf.DetachRequest, call) => {
      await registry.detach(await as(call, req.pid, 'Detach'), toNumber(req.attachmentId, 'attachment_id'));
      return {};
    }),
    pinAttachment: unary(async (req: dmabuf.PinAttachmentRequest, call) => {
      await registry.pin(await as(call, req.pid, 'PinAttachment'), toNumber(req.attachmentId, 'attachment_id'));
      return {};
    }),
    unpinAttachment: unary(async (req: dmabuf.UnpinAttachmentRequest, call) => {
      await registry.unpin(await as(call, req.pid, 'UnpinAttachment'), toNumber(req.attachmentId, 'attachment_id'));
      return {};
    }),
    mapAttachment: unary(async (req: dmabuf.MapAttachmentRequest, call) => {
      const mapping = await registry.map(await as(call, req.pid, 'MapAttachment'), toNumber(req.attachmentId, 'attachment_id'));
      return {
        transport: transportToWire(mapping.transport),
        directory: mapping.directory,
        extents: mapping.extents.map(extentToWire),
        mapType: mapTypeToWire(mapping.mapType),
        generation: BigInt(mapping.generation),
      };
    }),
    unmapAttachment: unary(async (req: dmabuf.UnmapAttachmentRequest, call) => {
      await registry.unmap(await as(call, req.pid, 'UnmapAttachment'), toNumber(req.attachmentId, 'attachment_id'));
      return {};
    }),
    ackMoveNotify: unary(async (req: dmabuf.AckMoveNotifyRequest, call) => {
      registry.ack(await as(call, req.pid, 'AckMoveNotify'), toNumber(req.notificationId, 'notification_id'));
      return {};
    }),

    readAttachment: (call: ServerWritableStream<dmabuf.ReadAttachmentRequest, dmabuf.ReadAttachmentResponse>) => {
      as(call, call.request.pid, 'ReadAttachment')
        .then((pid) => attachmentChunks(registry, pid, call.request, Math.min(STREAM_CHUNK, limit.payloadBytes)))
        .then(
          (chunks) => void sendPaced(call, chunks),
          (error: unknown) => failStream(call, error),
        );
    },
    writeAttachment: (call: ServerReadableStream<dmabuf.WriteAttachmentRequest, dmabuf.WriteAttachmentResponse>, callback: sendUnaryData<dmabuf.WriteAttachmentResponse>) => {
      let target: { pid: number; attachmentId: number; offset: number } | undefined;
      let written = 0;
      let failed = false;
      receivePaced(call, (chunk: dmabuf.WriteAttachmentRequest) => {
        if (failed) return;
        try {
          target ??= {
            pid: actingPid(callerNow(auth, call), chunk.pid, 'WriteAttachment'),
            attachmentId: toNumber(chunk.attachmentId, 'attachment_id'),
            offset: toNumber(chunk.offset, 'offset'),
          };
          registry.writeAttachment(target.pid, target.attachmentId, target.offset + written, chunk.data);
          written += chunk.data.length;
        } catch (error) {
          failed = true;
          callback(toServiceError(error));
        }
      });
      call.on('end', () => {
        if (failed) return;
        if (!target) callback(toServiceError(errno('EINVAL', 'WriteAttachment needs at least one message')));
        else callback(null, { written: BigInt(written) });
      });
    },

    heapAllocate: unary(async (req: dmabuf.HeapAllocateRequest, call) => {
      const allocated = registry.heapAllocate(await as(call, req.pid, 'HeapAllocate'), toNumber(req.size, 'size'), req.openFlags);
      return { fd: allocated.fd, bufferId: BigInt(allocated.bufferId) };
    }),
    cpuRead: unary(async (req: dmabuf.CpuReadRequest, call) => {
      const pid = await as(call, req.pid, 'CpuRead');
      limit.checkAnswer(req.length, 'CpuRead', 'map the buffer with MmapFd, read it in pieces, or attach and use ReadAttachment');
      return { data: await registry.cpuRead(pid, req.fd, toNumber(req.offset, 'offset'), toNumber(req.length, 'length')) };
    }),
    cpuWrite: unary(async (req: dmabuf.CpuWriteRequest, call) => {
      await registry.cpuWrite(await as(call, req.pid, 'CpuWrite'), req.fd, toNumber(req.offset, 'offset'), req.data);
      return {};
    }),

    mmapFd: unary(async (req: dmabuf.MmapFdRequest, call) => {
      const pid = await as(call, req.pid, 'MmapFd');
      const mapped = await registry.mmap(pid, req.fd, toNumber(req.offset, 'offset'), toNumber(req.length, 'length'), {
        ...(req.prot !== undefined ? { prot: req.prot } : {}),
        ...(req.addr !== undefined ? { addr: toNumber(req.addr, 'addr') } : {}),
        fixed: req.fixed === true,
      });
      return { directory: mapped.directory, extents: mapped.extents.map(extentToWire), addr: BigInt(mapped.addr), prot: mapped.prot };
    }),
    munmap: unary(async (req: dmabuf.MunmapRequest, call) => {
      await registry.munmap(await as(call, req.pid, 'Munmap'), toNumber(req.addr, 'addr'), toNumber(req.length, 'length'));
      return {};
    }),
    getProcessMaps: unary(async (req: dmabuf.GetProcessMapsRequest, call) => ({
      vmas: registry.maps(await as(call, req.pid, 'GetProcessMaps')).map(vmaToWire),
    })),
    // Privileged (see server.ts): the platform names both the process whose
    // pages it pins and its own process, whose session owns the pin.
    pinUserPages: unary(async (req: dmabuf.PinUserPagesRequest, call) => {
      const caller = await callerOf(auth, call);
      const pinned = await registry.pinUserPages({
        pid: actingPid(caller, req.pid, 'PinUserPages'),
        addr: toNumber(req.addr, 'addr'),
        length: toNumber(req.length, 'length'),
        write: req.write,
        pinnerPid: actingPid(caller, req.pinnerPid, 'PinUserPages (pinner_pid)'),
      });
      return { pinId: BigInt(pinned.pinId), directory: pinned.directory, shm: { id: pinned.shmId }, extents: pinned.extents.map(userPageExtentToWire) };
    }),
    unpinUserPages: unary(async (req: dmabuf.UnpinUserPagesRequest, call) => {
      await registry.unpinUserPages(await as(call, req.pinnerPid, 'UnpinUserPages'), toNumber(req.pinId, 'pin_id'));
      return {};
    }),

    getBufInfo: unary(() => ({ buffers: registry.bufInfo().map(bufInfoToWire) })),
    // Every process is listed, as /proc lists every pid; its fds, VMA and
    // pin counts only to itself and to the administrator and platform, as
    // /proc/<pid>/fd.
    listProcesses: unary(async (_req: dmabuf.ListProcessesRequest, call) => {
      const caller = await callerOf(auth, call);
      const { processes, owners } = registry.processes();
      return {
        processes: processes.map((p) => {
          const visible = maySee(caller, p.pid);
          return {
            pid: p.pid,
            name: p.name,
            fds: visible ? p.fds.map((f) => ({ fd: f.fd, kind: fileKindToWire(f.kind), fileId: BigInt(f.fileId), owner: f.owner })) : [],
            vmaCount: visible ? p.vmaCount : 0,
            pinCount: visible ? p.pinCount : 0,
          };
        }),
        owners: [...owners],
      };
    }),
    watchEvents: serverStream((_req: dmabuf.WatchEventsRequest, call: ServerWritableStream<dmabuf.WatchEventsRequest, dmabuf.WatchEventsResponse>) => {
      live.watchers.add(call);
      const unsubscribe = registry.onEvent((event) => call.write(eventToWire(event)));
      return () => {
        unsubscribe();
        live.watchers.delete(call);
      };
    }),
  };
}

/**
 * ReadAttachment's messages, each chunk read when it is due to go out, so a
 * revoke or fence mid-stream ends the call with its errno. The whole range
 * is checked first, before any byte goes out: a read of no bytes at its end
 * fails as a read of its last byte would (not mapped, revoked, past the end
 * of the buffer).
 */
function attachmentChunks(registry: Registry, pid: number, request: dmabuf.ReadAttachmentRequest, step: number): Iterator<dmabuf.ReadAttachmentResponse> {
  const id = toNumber(request.attachmentId, 'attachment_id');
  const start = toNumber(request.offset, 'offset');
  const total = toNumber(request.length, 'length');
  registry.readAttachment(pid, id, start + total, 0);
  return (function* () {
    for (let at = 0; at < total; at += step) yield { data: registry.readAttachment(pid, id, start + at, Math.min(step, total - at)) };
  })();
}

/**
 * Who gets move_notify for an attachment. A process imports for itself; the
 * platform (a NIC driver attaching in a user's fd table) names its own
 * importing process.
 */
function importerPidOf(caller: Caller, pid: number, importerPid: number): number {
  if (importerPid === 0 || importerPid === pid) return pid;
  if (caller.kind === 'process') throw errno('EPERM', `Attach: importer pid ${importerPid} is not the caller (pid ${pid})`);
  return importerPid;
}

/** The caller of a registry call, known at once: the registry resolves credentials itself. */
function callerNow(auth: Authenticator, call: { metadata: Metadata }): Caller {
  const caller = callerOf(auth, call);
  if (caller instanceof Promise) throw errno('EIO', 'the registry resolves its own credentials synchronously');
  return caller;
}
