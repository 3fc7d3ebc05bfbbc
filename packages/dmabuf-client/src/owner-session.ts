import { type ClientDuplexStream, type StatusObject } from '@grpc/grpc-js';
import { bearerInterceptor, channelCredentials, loadTlsConfig, type TlsConfig } from '@p2p/auth';
import { errno, ErrnoError, isErrnoName } from '@p2p/errno';
import { dmabuf } from '@p2p/proto';
import { connectPeer, type Peer } from '@p2p/rpc';
import { resolveShmDir, shmIdentity } from '@p2p/shm';
import { CHANNEL_OPTIONS, CLOSE_TIMEOUT_MS, DEFAULT_OPEN_TIMEOUT_MS } from './channel';
import { CredentialCache } from './credential-cache';
import { Emitter } from './emitter';
import { O_RDWR } from './open-flags';
import type { OwnerCallInfo, OwnerOps } from './owner-ops';
import { openStream, type StreamSink } from './stream-opener';
import { toU64, type U64 } from './u64';

export interface OwnerSessionOptions {
  /** Unique among live owners ("vfio-pci"). */
  readonly name: string;
  /** The platform's token: only services of the platform may own files. */
  readonly credential: string;
  /** TLS to the registry; default what P2P_TLS_* configure (plaintext when unset). */
  readonly tls?: TlsConfig;
  /** The directory of the owner's segment files; default resolveShmDir(). */
  readonly shmDir?: string;
  /** The exporter ops the registry calls. */
  readonly ops: OwnerOps;
  /** How long to wait for OwnerRegistered; default 10 s, then ETIMEDOUT. */
  readonly openTimeoutMs?: number;
}

export interface OwnerSessionEvents {
  /** The stream broke without close(): the registry revoked this owner's dma-bufs for good. */
  lost: (error: ErrnoError) => void;
}

/** exportDmaBuf's request: dma_buf_export() plus dma_buf_fd() into the fd table of `pid`. */
export interface ExportDmaBufOptions {
  /** The process whose fd table receives the fd. */
  readonly pid: number;
  readonly size: U64;
  /** The fd's flags; default O_RDWR. */
  readonly openFlags?: number;
  /** Exported while the memory is not decodable: starts revoked. Default false. */
  readonly revoked?: boolean;
  /** CPU access (read, write, mmap) allowed. Default false. */
  readonly cpuAccess?: boolean;
  /** The PCI function whose BAR provides the memory; default '' (host memory). */
  readonly providerBdf?: string;
  /** Pinned importers may attach. Default false (upstream vfio: EOPNOTSUPP). */
  readonly allowPin?: boolean;
  /** Importers must allow peer2peer (vfio: yes). Default false. */
  readonly requirePeer2peer?: boolean;
  /** The owner's own name for the buffer; OwnerCalls about it carry it back. */
  readonly handle: string;
}

export interface ExportedDmaBuf {
  readonly bufferId: bigint;
  readonly fd: number;
}

export interface CreatedFile {
  readonly fileId: bigint;
  readonly fd: number;
}

/** What a move did: move_notify calls made, and importers fenced for not acking in time. */
export interface MoveResult {
  readonly notified: number;
  readonly fenced: number;
}

/** The answers to this session's own requests. */
type Answer = Extract<NonNullable<dmabuf.OpenOwnerSessionResponse['response']>, { $case: 'fileCreated' | 'exported' | 'moved' | 'failed' }>;

interface Pending {
  answer(answer: Answer): void;
  fail(error: ErrnoError): void;
}

type OwnerStream = ClientDuplexStream<dmabuf.OpenOwnerSessionRequest, dmabuf.OpenOwnerSessionResponse>;
type OwnerSessionState = 'open' | 'closing' | 'closed' | 'lost';

/**
 * A service that owns files, connected to dmabuf-registry
 * (OpenOwnerSession): vfio-pci for device files and the dma-bufs it exports,
 * or a test exporter. Its requests (createFile, exportDmaBuf, move) are
 * answered on the stream by request_id, in any order; a request the registry
 * refuses rejects with an ErrnoError of the registry's errno. The registry's
 * calls into the owner (OwnerCall) go to `ops` and their results back as
 * OwnerReply.
 *
 * The stream's end is the owner's death: the registry revokes its dma-bufs
 * for good. Losing it without close() emits 'lost'; pending and later
 * requests reject with ESHUTDOWN.
 */
export class OwnerSession extends Emitter<OwnerSessionEvents> {
  readonly address: string;
  readonly name: string;
  /** The registry start this owner registered with. */
  readonly incarnation: string;
  readonly shmDir: string;
  readonly shmId: string;
  /**
   * Which process a caller's credential proves, asked of the registry once
   * and remembered until the process exits (the registry tells every owner).
   */
  readonly credentials: CredentialCache;
  /** The registry's unary methods, with the platform's credential. */
  readonly #registry: Peer<typeof dmabuf.DmaBufRegistryServiceDefinition>;
  readonly #stream: OwnerStream;
  readonly #ops: OwnerOps;
  readonly #finished: Promise<void>;
  readonly #pending = new Map<bigint, Pending>();
  /** file id (= buffer id for a dma-buf) -> the handle it was made with, for calls that carry none. */
  readonly #handles = new Map<bigint, string>();
  #nextRequestId = 1n;
  #state: OwnerSessionState = 'open';
  #endedDetail = '';
  #streamError: Error | undefined;

  private constructor(
    address: string,
    options: OwnerSessionOptions,
    shmDir: string,
    shmId: string,
    registry: Peer<typeof dmabuf.DmaBufRegistryServiceDefinition>,
    stream: OwnerStream,
    finished: Promise<void>,
    registered: dmabuf.OwnerRegistered,
  ) {
    super();
    this.address = address;
    this.name = options.name;
    this.shmDir = shmDir;
    this.shmId = shmId;
    this.incarnation = registered.incarnation;
    this.#ops = options.ops;
    this.#registry = registry;
    this.#stream = stream;
    this.#finished = finished;
    this.credentials = new CredentialCache((credential) => this.#resolveCredential(credential));
  }

  /**
   * Registers the owner: OpenOwnerSession, RegisterOwner with the tmpfs
   * identity of its segment directory, and wait for OwnerRegistered. Rejects
   * with the gRPC error if the registry refuses (a live owner of that name:
   * EBUSY), with ETIMEDOUT if it does not answer in time.
   */
  static async open(address: string, options: OwnerSessionOptions): Promise<OwnerSession> {
    const shmDir = options.shmDir ?? resolveShmDir();
    const shmId = shmIdentity(shmDir);
    const tls = options.tls ?? loadTlsConfig();
    const registry = connectPeer(dmabuf.DmaBufRegistryServiceDefinition, address, { name: 'dmabuf-registry', tls, token: options.credential, channelOptions: CHANNEL_OPTIONS });
    // The session stream shares the unary calls' channel and credential.
    const client = new dmabuf.DmaBufRegistryServiceClient(address, channelCredentials(tls), {
      channelOverride: registry.channel,
      interceptors: [bearerInterceptor(options.credential)],
    });
    const stream = client.openOwnerSession();
    return openStream({
      stream,
      greeting: {
        request: {
          $case: 'register',
          value: { name: options.name, shm: { id: shmId }, notifyFdClosed: options.ops.fdClosed !== undefined, absentOps: absentOps(options.ops) },
        },
      },
      peer: `the registry at ${address}`,
      expected: 'OwnerRegistered',
      first: (message) => (message.response?.$case === 'registered' ? message.response.value : undefined),
      timeoutMs: options.openTimeoutMs ?? DEFAULT_OPEN_TIMEOUT_MS,
      create: (registered, finished) => {
        const session = new OwnerSession(address, options, shmDir, shmId, registry, stream, finished, registered);
        const sink: StreamSink<dmabuf.OpenOwnerSessionResponse> = {
          data: (message) => session.#dispatch(message),
          error: (error) => (session.#streamError = error),
          status: (status) => session.#streamFinished(status),
        };
        return { session, sink };
      },
      abandon: () => registry.close(),
    });
  }

  get state(): OwnerSessionState {
    return this.#state;
  }

  /** Installs a new file of this owner (a vfio device fd, a verbs context) in the fd table of `pid`. */
  createFile(pid: number, handle: string, openFlags: number = O_RDWR): Promise<CreatedFile> {
    return this.#request(
      `create file ${handle} in pid ${pid}`,
      (requestId) => ({ $case: 'createFile', value: { requestId, pid, handle, openFlags } }),
      (answer) => {
        if (answer.$case !== 'fileCreated') return undefined;
        this.#handles.set(answer.value.fileId, handle);
        return { fileId: answer.value.fileId, fd: answer.value.fd };
      },
    );
  }

  /** dma_buf_export() + dma_buf_fd(): a dma-buf of this owner, installed in the fd table of options.pid. */
  exportDmaBuf(options: ExportDmaBufOptions): Promise<ExportedDmaBuf> {
    const value: Omit<dmabuf.ExportDmaBuf, 'requestId'> = {
      pid: options.pid,
      size: toU64(options.size, 'size'),
      openFlags: options.openFlags ?? O_RDWR,
      revoked: options.revoked ?? false,
      cpuAccess: options.cpuAccess ?? false,
      providerBdf: options.providerBdf ?? '',
      allowPin: options.allowPin ?? false,
      requirePeer2peer: options.requirePeer2peer ?? false,
      handle: options.handle,
    };
    return this.#request(
      `export ${options.handle} to pid ${options.pid}`,
      (requestId) => ({ $case: 'export', value: { ...value, requestId } }),
      (answer) => {
        if (answer.$case !== 'exported') return undefined;
        this.#handles.set(answer.value.bufferId, options.handle);
        return { bufferId: answer.value.bufferId, fd: answer.value.fd };
      },
    );
  }

  /**
   * vfio_pci_dma_buf_move(): sets the buffer's revoked bit. Resolves once
   * every dynamic importer acked its move_notify or was fenced. `permanent`
   * forgets the buffer for good (the device was closed).
   */
  move(bufferId: bigint, revoked: boolean, permanent = false): Promise<MoveResult> {
    return this.#request(
      `move buffer ${bufferId} to revoked=${revoked}${permanent ? ' for good' : ''}`,
      (requestId) => ({ $case: 'move', value: { requestId, bufferId, revoked, permanent } }),
      (answer) => (answer.$case === 'moved' ? { notified: answer.value.notified, fenced: answer.value.fenced } : undefined),
    );
  }

  /**
   * Several moves at once (every buffer of a device on a revoke): every
   * request goes out before any answer is awaited, so the importers of all
   * the buffers are told concurrently and the revoke takes about as long as
   * its slowest buffer. Settles with each move's outcome, in order.
   */
  moveAll(moves: ReadonlyArray<{ bufferId: bigint; revoked: boolean; permanent?: boolean }>): Promise<Array<PromiseSettledResult<MoveResult>>> {
    return Promise.allSettled(moves.map((m) => this.move(m.bufferId, m.revoked, m.permanent ?? false)));
  }

  /**
   * What `pid`'s `fd` refers to (ResolveFd, asked every time): EBADF if pid
   * holds no such fd. An owner remembers the answers for its own files in an
   * FdCache, fed by its fdClosed and release ops.
   */
  resolveFd(pid: number, fd: number): Promise<dmabuf.ResolveFdResponse> {
    this.#check();
    return this.#registry.client.resolveFd({ pid, fd });
  }

  /**
   * Ends the owner session: the registry revokes its dma-bufs for good.
   * Pending requests reject with ESHUTDOWN. Resolves once the stream is done
   * (cancelled if the registry does not finish it within 5 s).
   */
  close(): Promise<void> {
    if (this.#state === 'open') {
      this.#end('closing', `owner session "${this.name}" was closed`);
      this.#stream.end();
      const timer = setTimeout(() => this.#stream.cancel(), CLOSE_TIMEOUT_MS);
      void this.#finished.then(() => clearTimeout(timer));
    }
    return this.#finished;
  }

  /**
   * Sends one request and settles with `accept`'s result for its answer.
   * OwnerRequestFailed rejects with an ErrnoError of its errno; an answer of
   * the wrong kind is EIO.
   */
  #request<T>(what: string, build: (requestId: bigint) => NonNullable<dmabuf.OpenOwnerSessionRequest['request']>, accept: (answer: Answer) => T | undefined): Promise<T> {
    return new Promise((resolve, reject) => {
      this.#check();
      const requestId = this.#nextRequestId++;
      this.#pending.set(requestId, {
        answer: (answer) => {
          if (answer.$case === 'failed') {
            const name = isErrnoName(answer.value.errno) ? answer.value.errno : 'EIO';
            reject(errno(name, `${what}: ${answer.value.detail || answer.value.errno}`));
            return;
          }
          const result = accept(answer);
          if (result === undefined) reject(errno('EIO', `${what}: the registry answered ${answer.$case}`));
          else resolve(result);
        },
        fail: reject,
      });
      this.#stream.write({ request: build(requestId) });
    });
  }

  #dispatch(message: dmabuf.OpenOwnerSessionResponse): void {
    if (this.#state !== 'open') return;
    const response = message.response;
    if (response === undefined || response.$case === 'registered') return;
    if (response.$case === 'processExited') {
      this.credentials.processExited(response.value.pid);
      return;
    }
    if (response.$case === 'call') {
      void this.#serve(response.value);
      return;
    }
    const pending = this.#pending.get(response.value.requestId);
    if (pending === undefined) return;
    this.#pending.delete(response.value.requestId);
    pending.answer(response);
  }

  /** Runs one OwnerCall on the ops and replies with its extents or its errno. */
  async #serve(call: dmabuf.OwnerCall): Promise<void> {
    const info: OwnerCallInfo = {
      callId: call.callId,
      op: call.op,
      fileId: call.fileId,
      attachmentId: call.attachmentId,
      importerBdf: call.importerBdf,
      peer2peer: call.peer2peer,
      importerPid: call.importerPid,
      dynamic: call.dynamic,
      mapType: call.mapType,
      pid: call.pid,
      fd: call.fd,
      handle: call.handle !== '' ? call.handle : this.#handles.get(call.fileId),
    };
    let reply: dmabuf.OwnerReply;
    try {
      reply = { callId: call.callId, errno: '', detail: '', extents: [...(await this.#invoke(info))] };
    } catch (error) {
      const failure = error instanceof ErrnoError ? error : errno('EIO', error instanceof Error ? error.message : String(error));
      reply = { callId: call.callId, errno: failure.errno, detail: failure.detail, extents: [] };
    }
    // Release is final whatever the op said (the kernel's ->release returns void).
    if (call.op === dmabuf.OwnerOp.OWNER_OP_RELEASE) this.#handles.delete(call.fileId);
    if (this.#state === 'open') this.#stream.write({ request: { $case: 'reply', value: reply } });
  }

  async #invoke(call: OwnerCallInfo): Promise<readonly dmabuf.Extent[]> {
    const ops = this.#ops;
    switch (call.op) {
      case dmabuf.OwnerOp.OWNER_OP_ATTACH:
        await ops.attach?.(call);
        return [];
      case dmabuf.OwnerOp.OWNER_OP_DETACH:
        await ops.detach?.(call);
        return [];
      case dmabuf.OwnerOp.OWNER_OP_MAP:
        return ops.map(call);
      case dmabuf.OwnerOp.OWNER_OP_CPU_MAP:
        return ops.cpuMap !== undefined ? ops.cpuMap(call) : ops.map(call);
      case dmabuf.OwnerOp.OWNER_OP_UNMAP:
        await ops.unmap?.(call);
        return [];
      case dmabuf.OwnerOp.OWNER_OP_PIN:
        await ops.pin?.(call);
        return [];
      case dmabuf.OwnerOp.OWNER_OP_UNPIN:
        await ops.unpin?.(call);
        return [];
      case dmabuf.OwnerOp.OWNER_OP_RELEASE:
        await ops.release(call);
        return [];
      case dmabuf.OwnerOp.OWNER_OP_FENCE:
        await ops.fence(call);
        return [];
      case dmabuf.OwnerOp.OWNER_OP_FD_CLOSED:
        await ops.fdClosed?.(call);
        return [];
      default:
        throw errno('EOPNOTSUPP', `owner op ${call.op} is unknown to this client`);
    }
  }

  /** ResolveCredential: the pid, or undefined where the registry says EPERM (no such live process). */
  async #resolveCredential(credential: string): Promise<number | undefined> {
    try {
      return (await this.#registry.client.resolveCredential({ credential })).pid;
    } catch (error) {
      if (error instanceof ErrnoError && error.errno === 'EPERM') return undefined;
      throw error;
    }
  }

  #streamFinished(status: StatusObject): void {
    this.credentials.clear();
    if (this.#state === 'closing') {
      this.#state = 'closed';
      this.#registry.close();
      return;
    }
    const cause = this.#streamError?.message ?? `the registry ended the stream (${status.details || 'OK'})`;
    this.#end(
      'lost',
      `owner session "${this.name}" was lost (incarnation ${this.incarnation}): ${cause}. ` +
        'The registry revoked its dma-bufs for good; the owner must register again',
    );
    this.#registry.close();
    this.emit('lost', errno('ESHUTDOWN', this.#endedDetail));
  }

  #end(state: 'closing' | 'lost', detail: string): void {
    this.#state = state;
    this.#endedDetail = detail;
    const pending = [...this.#pending.values()];
    this.#pending.clear();
    for (const request of pending) request.fail(errno('ESHUTDOWN', detail));
  }

  #check(): void {
    if (this.#state !== 'open') throw errno('ESHUTDOWN', this.#endedDetail);
  }
}

/** The optional ops `ops` leaves out: the registry skips them rather than make a round trip that does nothing. */
function absentOps(ops: OwnerOps): dmabuf.OwnerOp[] {
  const optional: Array<[keyof OwnerOps, dmabuf.OwnerOp]> = [
    ['attach', dmabuf.OwnerOp.OWNER_OP_ATTACH],
    ['detach', dmabuf.OwnerOp.OWNER_OP_DETACH],
    ['pin', dmabuf.OwnerOp.OWNER_OP_PIN],
    ['unpin', dmabuf.OwnerOp.OWNER_OP_UNPIN],
    ['unmap', dmabuf.OwnerOp.OWNER_OP_UNMAP],
  ];
  return optional.filter(([name]) => ops[name] === undefined).map(([, op]) => op);
}
