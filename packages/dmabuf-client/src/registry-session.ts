import { type ClientDuplexStream, type Interceptor, type StatusObject } from '@grpc/grpc-js';
import { bearerInterceptor, channelCredentials, loadTlsConfig, type TlsConfig } from '@p2p/auth';
import { errno, ErrnoError, isErrnoName } from '@p2p/errno';
import { dmabuf } from '@p2p/proto';
import { connectPeer, type Peer } from '@p2p/rpc';
import { resolveShmDir, shmIdentity } from '@p2p/shm';
import { CHANNEL_OPTIONS, CLOSE_TIMEOUT_MS, DEFAULT_OPEN_TIMEOUT_MS } from './channel';
import { DmaBufImporter, type ImportDmaBufOptions } from './dmabuf-importer';
import { Emitter } from './emitter';
import { O_RDWR } from './open-flags';
import type { AttachmentHandlers, SessionPort } from './session-port';
import { openStream, type StreamSink } from './stream-opener';
import { toU64, type U64 } from './u64';

export interface RegistrySessionOptions {
  /** A label for listings ("spdk", "rdma-nic-a"). */
  readonly name: string;
  /** This process's segment directory; default resolveShmDir(). Its tmpfs identity goes with every attach. */
  readonly shmDir?: string;
  /** How long to wait for SessionOpened; default 10 s, then ETIMEDOUT. */
  readonly openTimeoutMs?: number;
  /**
   * The platform's or the administrator's token, for a process that acts
   * beyond itself: a NIC driver importing a dma-buf from a user's fd table
   * (as the kernel does in the user's context), or a tool reading bufinfo.
   * Its calls then carry this token instead of the session's own credential.
   */
  readonly privilegedCredential?: string;
  /** TLS to the registry; default what P2P_TLS_* configure (plaintext when unset). */
  readonly tls?: TlsConfig;
}

/* mmap(2) protection (include/uapi/asm-generic/mman-common.h), for mmapFd() and maps(). */
export const PROT_NONE = 0;
export const PROT_READ = 1;
export const PROT_WRITE = 2;

/** Where mmapFd() puts the mapping, and with what protection. */
export interface MmapOptions {
  /** PROT_READ | PROT_WRITE (PROT_NONE is 0). Default: PROT_READ, and PROT_WRITE if the fd is open O_RDWR. */
  readonly prot?: number;
  /** A hint: taken if the range is free. With `fixed`, the address itself. */
  readonly addr?: U64;
  /** MAP_FIXED: exactly at `addr`, replacing what is mapped there. */
  readonly fixed?: boolean;
}

export interface RegistrySessionEvents {
  /** The session broke without close(): the registry sees the process as exited. Mappings are already dropped. */
  lost: (error: ErrnoError) => void;
  /** Background work failed: an onMoveNotify hook threw, or the registry refused an ack. */
  error: (error: unknown) => void;
}

/** open: usable. closing/closed: close() was called. lost: the stream broke; see the 'lost' event. */
export type SessionState = 'open' | 'closing' | 'closed' | 'lost';

type SessionStream = ClientDuplexStream<dmabuf.OpenSessionRequest, dmabuf.OpenSessionResponse>;

/**
 * One process's session with dmabuf-registry (OpenSession): its pid and fd
 * table live as long as the stream, and its importers' move_notify and fence
 * notices arrive on it.
 *
 * Every unary RPC is a promise method with this session's pid filled in,
 * made through @p2p/rpc (credential, deadline); a failed call rejects with
 * the registry's errno (a PeerError, an ErrnoError naming the method).
 *
 * Losing the stream (the registry died or restarted, the connection broke,
 * keepalive gave up) is the process's exit as far as the registry is
 * concerned: its fds are closed and its buffers may be released and reused.
 * The session therefore fails safe: at once every importer drops its
 * mappings and never touches that memory again, every later call on the
 * session or its importers rejects with ESHUTDOWN, and 'lost' is emitted.
 * Recovery is a new session (a new pid; with a new incarnation, nothing of
 * the old one exists).
 */
export class RegistrySession extends Emitter<RegistrySessionEvents> {
  readonly address: string;
  readonly name: string;
  readonly pid: number;
  /** The registry start this session belongs to: fds of another incarnation mean nothing here. */
  readonly incarnation: string;
  readonly shmDir: string;
  /** The tmpfs identity of shmDir: equal to an owner's, the importer maps its segments directly. */
  readonly shmId: string;
  /**
   * Proves this process on every service: this session's own calls carry
   * it, and `interceptor` adds it to the calls of any other client (vfio-pci,
   * a NIC). Dead once the session ends.
   */
  readonly credential: string;
  /** A client interceptor that sends `credential` (`authorization: Bearer ...`) on every call. */
  readonly interceptor: Interceptor;
  /** The registry's unary methods; the stream and the importers' calls share its channel. */
  readonly #registry: Peer<typeof dmabuf.DmaBufRegistryServiceDefinition>;
  readonly #stream: SessionStream;
  readonly #routes = new Map<bigint, AttachmentHandlers>();
  readonly #port: SessionPort;
  #state: SessionState = 'open';
  /** Why calls fail once the session is not open. */
  #endedDetail = '';
  #streamError: Error | undefined;
  /** Settles when the stream is done, for whatever reason. */
  readonly #finished: Promise<void>;

  private constructor(
    address: string,
    name: string,
    shmDir: string,
    shmId: string,
    registry: Peer<typeof dmabuf.DmaBufRegistryServiceDefinition>,
    client: dmabuf.DmaBufRegistryServiceClient,
    stream: SessionStream,
    finished: Promise<void>,
    opened: dmabuf.SessionOpened,
  ) {
    super();
    this.address = address;
    this.name = name;
    this.shmDir = shmDir;
    this.shmId = shmId;
    this.pid = opened.pid;
    this.incarnation = opened.incarnation;
    this.credential = opened.credential;
    this.interceptor = bearerInterceptor(opened.credential);
    this.#registry = registry;
    this.#stream = stream;
    this.#finished = finished;
    this.#port = {
      pid: this.pid,
      shmDir,
      client,
      usable: () => this.#state === 'open',
      registry: registry.client,
      call: (call) => this.#call(call),
      check: () => this.#check(),
      route: (attachmentId, handlers) => {
        this.#routes.set(attachmentId, handlers);
        return () => {
          if (this.#routes.get(attachmentId) === handlers) this.#routes.delete(attachmentId);
        };
      },
      ackOnStream: (notificationId) => this.#ackOnStream(notificationId),
      reportError: (error) => this.emit('error', error),
    };
  }

  /**
   * Opens a session: OpenSession, Hello, and wait for SessionOpened. Rejects
   * with the gRPC error if the registry is unreachable or fails the stream
   * first, with ETIMEDOUT if it does not answer in time.
   */
  static async open(address: string, options: RegistrySessionOptions): Promise<RegistrySession> {
    const shmDir = options.shmDir ?? resolveShmDir();
    const shmId = shmIdentity(shmDir);
    // The credential comes with SessionOpened; calls of this client carry it from then on.
    let credential = options.privilegedCredential;
    const tls = options.tls ?? loadTlsConfig();
    const registry = connectPeer(dmabuf.DmaBufRegistryServiceDefinition, address, { name: 'dmabuf-registry', tls, token: () => credential, channelOptions: CHANNEL_OPTIONS });
    const client = new dmabuf.DmaBufRegistryServiceClient(address, channelCredentials(tls), {
      channelOverride: registry.channel,
      interceptors: [bearerInterceptor(() => credential)],
    });
    const stream = client.openSession();
    return openStream({
      stream,
      greeting: { request: { $case: 'hello', value: { name: options.name } } },
      peer: `the registry at ${address}`,
      expected: 'SessionOpened',
      first: (message) => (message.response?.$case === 'opened' ? message.response.value : undefined),
      timeoutMs: options.openTimeoutMs ?? DEFAULT_OPEN_TIMEOUT_MS,
      create: (opened, finished) => {
        credential ??= opened.credential;
        const session = new RegistrySession(address, options.name, shmDir, shmId, registry, client, stream, finished, opened);
        const sink: StreamSink<dmabuf.OpenSessionResponse> = {
          data: (message) => session.#dispatch(message),
          error: (error) => (session.#streamError = error),
          status: (status) => session.#streamFinished(status),
        };
        return { session, sink };
      },
      abandon: () => registry.close(),
    });
  }

  get state(): SessionState {
    return this.#state;
  }

  /** dup(2). */
  async dupFd(fd: number): Promise<number> {
    return (await this.#call(() => this.#registry.client.dupFd({ pid: this.pid, fd }))).fd;
  }

  /** close(2); the last reference's release goes to the file's owner. */
  async closeFd(fd: number): Promise<void> {
    await this.#call(() => this.#registry.client.closeFd({ pid: this.pid, fd }));
  }

  /**
   * SCM_RIGHTS, sending side: a one-time token that only `toPid` can redeem
   * with receiveFd(). `fromPid` sends an fd of another process, as the
   * platform may (a NIC passing the dma-buf an MR was registered from).
   */
  async sendFd(fd: number, toPid: number, fromPid: number = this.pid): Promise<string> {
    return (await this.#call(() => this.#registry.client.sendFd({ pid: fromPid, fd, toPid }))).token;
  }

  /** SCM_RIGHTS, receiving side: installs the sent file in this process's table. */
  async receiveFd(token: string): Promise<number> {
    return (await this.#call(() => this.#registry.client.receiveFd({ pid: this.pid, token }))).fd;
  }

  /** What an fd refers to: kind, file id, owner, the owner's handle and the open flags. */
  resolveFd(fd: number): Promise<dmabuf.ResolveFdResponse> {
    return this.#call(() => this.#registry.client.resolveFd({ pid: this.pid, fd }));
  }

  /** DMA_HEAP_IOCTL_ALLOC on /dev/dma_heap/system: a host-memory dma-buf in this process's table. */
  async heapAllocate(size: U64, openFlags: number = O_RDWR): Promise<{ fd: number; bufferId: bigint }> {
    const request = { pid: this.pid, size: toU64(size, 'size'), openFlags };
    const { fd, bufferId } = await this.#call(() => this.#registry.client.heapAllocate(request));
    return { fd, bufferId };
  }

  /** CPU read of a dma-buf (the debugging path, not the importer's). */
  async cpuRead(fd: number, offset: U64, length: U64): Promise<Buffer> {
    const request = { pid: this.pid, fd, offset: toU64(offset, 'offset'), length: toU64(length, 'length') };
    return (await this.#call(() => this.#registry.client.cpuRead(request))).data;
  }

  /** CPU write into a dma-buf. */
  async cpuWrite(fd: number, offset: U64, data: Uint8Array): Promise<void> {
    const request = { pid: this.pid, fd, offset: toU64(offset, 'offset'), data: Buffer.from(data.buffer, data.byteOffset, data.byteLength) };
    await this.#call(() => this.#registry.client.cpuWrite(request));
  }

  /**
   * mmap(2) of a dma-buf fd into this process's address space: the address
   * of the new VMA (page aligned; without options placed top-down below
   * 0x7f0000000000), the protection granted, and the segments behind
   * [offset, offset + length) in the owner's directory. The VMA holds the
   * buffer until munmap() or the end of the session, also after closeFd().
   */
  mmapFd(fd: number, offset: U64, length: U64, options: MmapOptions = {}): Promise<dmabuf.MmapFdResponse> {
    const request: dmabuf.MmapFdRequest = {
      pid: this.pid,
      fd,
      offset: toU64(offset, 'offset'),
      length: toU64(length, 'length'),
      ...(options.prot !== undefined ? { prot: options.prot } : {}),
      ...(options.addr !== undefined ? { addr: toU64(options.addr, 'addr') } : {}),
      ...(options.fixed !== undefined ? { fixed: options.fixed } : {}),
    };
    return this.#call(() => this.#registry.client.mmapFd(request));
  }

  /** munmap(2): unmaps [addr, addr + length) of this process's address space, splitting a VMA the range cuts. */
  async munmap(addr: U64, length: U64): Promise<void> {
    const request = { pid: this.pid, addr: toU64(addr, 'addr'), length: toU64(length, 'length') };
    await this.#call(() => this.#registry.client.munmap(request));
  }

  /** /proc/self/maps: this process's VMAs, lowest address first. */
  async maps(): Promise<dmabuf.Vma[]> {
    return (await this.#call(() => this.#registry.client.getProcessMaps({ pid: this.pid }))).vmas;
  }

  /**
   * pin_user_pages(FOLL_LONGTERM) of [addr, addr + length) of process `pid`
   * (whole pages), for a platform service: a session opened with the
   * platform's or the administrator's privilegedCredential (EACCES
   * otherwise). Returns the pin's id and the host memory behind the range;
   * the pages stay whatever `pid` does until unpinUserPages() or the end of
   * this session. Unmapped pages, device memory and a write to a read-only
   * mapping are EFAULT.
   */
  pinUserPages(pid: number, addr: U64, length: U64, write: boolean): Promise<dmabuf.PinUserPagesResponse> {
    const request = { pid, addr: toU64(addr, 'addr'), length: toU64(length, 'length'), write, pinnerPid: this.pid };
    return this.#call(() => this.#registry.client.pinUserPages(request));
  }

  /** unpin_user_pages(): ENOENT for a pin this session does not hold. */
  async unpinUserPages(pinId: U64): Promise<void> {
    const request = { pinnerPid: this.pid, pinId: toU64(pinId, 'pin_id') };
    await this.#call(() => this.#registry.client.unpinUserPages(request));
  }

  /** /sys/kernel/debug/dma_buf/bufinfo. */
  async bufInfo(): Promise<dmabuf.BufInfo[]> {
    return (await this.#call(() => this.#registry.client.getBufInfo({}))).buffers;
  }

  /** The live processes with their fds, and the live owners. */
  listProcesses(): Promise<dmabuf.ListProcessesResponse> {
    return this.#call(() => this.#registry.client.listProcesses({}));
  }

  /**
   * ib_umem_dmabuf_get(): a dynamic attach (dma_buf_dynamic_attach with
   * move_notify) to the dma-buf `fd` of `holderPid`, with this process as
   * the importer that gets the notices. Nothing is mapped until first use.
   */
  async importDmaBuf(options: ImportDmaBufOptions): Promise<DmaBufImporter> {
    const request: dmabuf.AttachRequest = {
      pid: options.holderPid ?? this.pid,
      fd: options.fd,
      importerPid: this.pid,
      importerBdf: options.importerBdf,
      dynamic: true,
      peer2peer: options.peer2peer ?? true,
      shm: { id: this.shmId },
    };
    const attached = await this.#call(() => this.#registry.client.attach(request));
    return new DmaBufImporter(this.#port, attached, options);
  }

  /**
   * Ends the session: process exit in the registry, which closes every fd it
   * held. Importers drop their mappings first. Resolves once the stream is
   * done (cancelled if the registry does not finish it within 5 s).
   */
  close(): Promise<void> {
    if (this.#state === 'open') {
      this.#end('closing', `registry session "${this.name}" (pid ${this.pid}) was closed`);
      this.#stream.end();
      const timer = setTimeout(() => this.#stream.cancel(), CLOSE_TIMEOUT_MS);
      void this.#finished.then(() => clearTimeout(timer));
    }
    return this.#finished;
  }

  #dispatch(message: dmabuf.OpenSessionResponse): void {
    if (this.#state !== 'open') return;
    const response = message.response;
    if (response?.$case === 'moveNotify') {
      const route = this.#routes.get(response.value.attachmentId);
      if (route !== undefined) route.moveNotify(response.value);
      else this.#ackUnrouted(response.value);
    } else if (response?.$case === 'fenced') {
      this.#routes.get(response.value.attachmentId)?.fenced(response.value);
    } else if (response?.$case === 'ackRejected') {
      const { errno: name, detail, notificationId } = response.value;
      this.emit('error', new ErrnoError(isErrnoName(name) ? name : 'EIO', `ack of notification ${notificationId} refused: ${detail}`));
    }
  }

  #ackOnStream(notificationId: bigint): void {
    if (this.#state !== 'open') return;
    this.#stream.write({ request: { $case: 'ack', value: { notificationId } } });
  }

  /**
   * A notice for an attachment no importer here holds: already detached, or
   * its Attach answer is still on the way. Nothing of it is mapped, so the
   * ack is due at once; a refusal means the attachment is gone anyway.
   */
  #ackUnrouted(notice: dmabuf.MoveNotify): void {
    this.#ackOnStream(notice.notificationId);
  }

  #streamFinished(status: StatusObject): void {
    if (this.#state === 'closing') {
      this.#state = 'closed';
      this.#registry.close();
      return;
    }
    const cause = this.#streamError?.message ?? `the registry ended the stream (${status.details || 'OK'})`;
    this.#end(
      'lost',
      `registry session "${this.name}" (pid ${this.pid}) was lost (incarnation ${this.incarnation}): ${cause}. ` +
        'The registry has closed its fds, attachments and mappings; the process must open a new session',
    );
    this.#registry.close();
    this.emit('lost', errno('ESHUTDOWN', this.#endedDetail));
  }

  /** Stops every use of the session, and every importer drops its mapping, before anything else runs. */
  #end(state: 'closing' | 'lost', detail: string): void {
    this.#state = state;
    this.#endedDetail = detail;
    const routes = [...this.#routes.values()];
    this.#routes.clear();
    for (const route of routes) route.sessionEnded();
  }

  #check(): void {
    if (this.#state !== 'open') throw errno('ESHUTDOWN', this.#endedDetail);
  }

  /** A unary call while the session is open; an answer that arrives after it ended is not acted on (ESHUTDOWN). */
  async #call<Res>(call: () => Promise<Res>): Promise<Res> {
    this.#check();
    let response: Res;
    try {
      response = await call();
    } catch (error) {
      this.#check();
      throw error;
    }
    this.#check();
    return response;
  }
}
