import type { ServerDuplexStream, ServerReadableStream, ServerWritableStream, sendUnaryData } from '@grpc/grpc-js';
import { errno } from '@p2p/errno';
import { dmabuf } from '@p2p/proto';
import { failStream, serverStream, unary } from '@p2p/server';
import { toServiceError } from '@p2p/status';
import type { Registry } from '../index';
import { ownerSessionHandler, type OwnerSessionOptions } from './owner-session-handler';
import { sessionHandler } from './session-handler';
import { bufInfoToWire, eventToWire, extentToWire, fileKindToWire, mapTypeToWire, toNumber, transportToWire } from './wire';

/** Streams a server keeps open; ended on shutdown so the drain completes. */
export interface LiveStreams {
  sessions: Set<ServerDuplexStream<dmabuf.OpenSessionRequest, dmabuf.OpenSessionResponse>>;
  owners: Set<ServerDuplexStream<dmabuf.OpenOwnerSessionRequest, dmabuf.OpenOwnerSessionResponse>>;
  watchers: Set<ServerWritableStream<dmabuf.WatchEventsRequest, dmabuf.WatchEventsResponse>>;
}

/** Chunk size of the streamed fallback. */
const STREAM_CHUNK = 1024 * 1024;

/**
 * DmaBufRegistryService: decode, call the registry, encode. Every rule lives
 * in the registry; a thrown ErrnoError becomes the status.
 */
export function registryHandlers(registry: Registry, options: OwnerSessionOptions, live: LiveStreams): dmabuf.DmaBufRegistryServiceServer {
  return {
    openSession: sessionHandler(registry, options.incarnation, live.sessions),
    openOwnerSession: ownerSessionHandler(registry, options, live.owners),

    dupFd: unary((req: dmabuf.DupFdRequest) => ({ fd: registry.dup(req.pid, req.fd) })),
    closeFd: unary(async (req: dmabuf.CloseFdRequest) => {
      await registry.close(req.pid, req.fd);
      return {};
    }),
    sendFd: unary((req: dmabuf.SendFdRequest) => ({ token: registry.sendFd(req.pid, req.fd, req.toPid) })),
    receiveFd: unary((req: dmabuf.ReceiveFdRequest) => ({ fd: registry.receiveFd(req.pid, req.token) })),
    resolveFd: unary((req: dmabuf.ResolveFdRequest) => {
      const file = registry.resolveFd(req.pid, req.fd);
      return { kind: fileKindToWire(file.kind), fileId: BigInt(file.fileId), owner: file.owner, handle: file.handle, openFlags: file.openFlags };
    }),

    attach: unary(async (req: dmabuf.AttachRequest) => {
      const attached = await registry.attach({
        pid: req.pid,
        fd: req.fd,
        importerPid: req.importerPid === 0 ? req.pid : req.importerPid,
        importerBdf: req.importerBdf,
        dynamic: req.dynamic,
        peer2peer: req.peer2peer,
        shmId: req.shm?.id ?? '',
      });
      return { attachmentId: BigInt(attached.attachmentId), bufferId: BigInt(attached.bufferId), size: BigInt(attached.size) };
    }),
    detach: unary(async (req: dmabuf.DetachRequest) => {
      await registry.detach(req.pid, toNumber(req.attachmentId, 'attachment_id'));
      return {};
    }),
    pinAttachment: unary(async (req: dmabuf.PinAttachmentRequest) => {
      await registry.pin(req.pid, toNumber(req.attachmentId, 'attachment_id'));
      return {};
    }),
    unpinAttachment: unary(async (req: dmabuf.UnpinAttachmentRequest) => {
      await registry.unpin(req.pid, toNumber(req.attachmentId, 'attachment_id'));
      return {};
    }),
    mapAttachment: unary(async (req: dmabuf.MapAttachmentRequest) => {
      const mapping = await registry.map(req.pid, toNumber(req.attachmentId, 'attachment_id'));
      return {
        transport: transportToWire(mapping.transport),
        directory: mapping.directory,
        extents: mapping.extents.map(extentToWire),
        mapType: mapTypeToWire(mapping.mapType),
        generation: BigInt(mapping.generation),
      };
    }),
    unmapAttachment: unary(async (req: dmabuf.UnmapAttachmentRequest) => {
      await registry.unmap(req.pid, toNumber(req.attachmentId, 'attachment_id'));
      return {};
    }),
    ackMoveNotify: unary((req: dmabuf.AckMoveNotifyRequest) => {
      registry.ack(req.pid, toNumber(req.notificationId, 'notification_id'));
      return {};
    }),

    readAttachment: (call: ServerWritableStream<dmabuf.ReadAttachmentRequest, dmabuf.ReadAttachmentResponse>) => {
      const { pid, attachmentId, offset, length } = call.request;
      try {
        const start = toNumber(offset, 'offset');
        const total = toNumber(length, 'length');
        for (let at = 0; at < total; at += STREAM_CHUNK) {
          const data = registry.readAttachment(pid, toNumber(attachmentId, 'attachment_id'), start + at, Math.min(STREAM_CHUNK, total - at));
          call.write({ data });
        }
        call.end();
      } catch (error) {
        failStream(call, error);
      }
    },
    writeAttachment: (call: ServerReadableStream<dmabuf.WriteAttachmentRequest, dmabuf.WriteAttachmentResponse>, callback: sendUnaryData<dmabuf.WriteAttachmentResponse>) => {
      let target: { pid: number; attachmentId: number; offset: number } | undefined;
      let written = 0;
      let failed = false;
      call.on('data', (chunk: dmabuf.WriteAttachmentRequest) => {
        if (failed) return;
        try {
          target ??= { pid: chunk.pid, attachmentId: toNumber(chunk.attachmentId, 'attachment_id'), offset: toNumber(chunk.offset, 'offset') };
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

    heapAllocate: unary((req: dmabuf.HeapAllocateRequest) => {
      const allocated = registry.heapAllocate(req.pid, toNumber(req.size, 'size'), req.openFlags);
      return { fd: allocated.fd, bufferId: BigInt(allocated.bufferId) };
    }),
    cpuRead: unary(async (req: dmabuf.CpuReadRequest) => ({ data: await registry.cpuRead(req.pid, req.fd, toNumber(req.offset, 'offset'), toNumber(req.length, 'length')) })),
    cpuWrite: unary(async (req: dmabuf.CpuWriteRequest) => {
      await registry.cpuWrite(req.pid, req.fd, toNumber(req.offset, 'offset'), req.data);
      return {};
    }),
    mmapFd: unary(async (req: dmabuf.MmapFdRequest) => {
      const mapped = await registry.mmap(req.pid, req.fd, toNumber(req.offset, 'offset'), toNumber(req.length, 'length'));
      return { directory: mapped.directory, extents: mapped.extents.map(extentToWire) };
    }),

    getBufInfo: unary(() => ({ buffers: registry.bufInfo().map(bufInfoToWire) })),
    listProcesses: unary(() => {
      const { processes, owners } = registry.processes();
      return {
        processes: processes.map((p) => ({
          pid: p.pid,
          name: p.name,
          fds: p.fds.map((f) => ({ fd: f.fd, kind: fileKindToWire(f.kind), fileId: BigInt(f.fileId), owner: f.owner })),
        })),
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
