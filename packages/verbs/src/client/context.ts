import { bearerInterceptor, channelCredentials, loadTlsConfig, type TlsConfig } from '@p2p/auth';
import { errno } from '@p2p/errno';
import { rdma } from '@p2p/proto';
import { connectPeer, type Peer } from '@p2p/rpc';
import { IBV_QP_ACCESS_FLAGS, IBV_QP_AV, IBV_QP_DEST_QPN, IBV_QP_MAX_DEST_RD_ATOMIC, IBV_QP_MAX_QP_RD_ATOMIC, IBV_QP_MIN_RNR_TIMER, IBV_QP_PATH_MTU, IBV_QP_PKEY_INDEX, IBV_QP_PORT, IBV_QP_RETRY_CNT, IBV_QP_RNR_RETRY, IBV_QP_RQ_PSN, IBV_QP_SQ_PSN, IBV_QP_STATE, IBV_QP_TIMEOUT } from '../abi/qp-attr-mask';
import { CallPostStream, type PostStream } from './post-stream';
import { MappedBuffer, type QueueMemory, RingPostStream, UserCq, UserQp, UserQueues, userQueuesUnavailable } from './user-queues';
import { encodeCqes } from '../abi/cqe';
import { QP_EX_SUPPORTED_SEND_OPS } from '../abi/qp-ex';
import { QpEx } from './qp-ex';
import { qpRingBytes, cqRingBytes } from '../abi/user-queues';

/** What an RC QP needs to know of its peer: exchanged out of band, as applications do over TCP or rdma_cm. */
export interface RcPeer {
  /** The peer port's GID, 16 bytes (QueryPort). */
  readonly gid: Uint8Array;
  readonly qpNum: number;
  /** The PSN the peer starts sending with; default 0. */
  readonly psn?: number;
}

/** The attributes connectRc() sets beyond the peer; defaults as perftest's. */
export interface RcOptions {
  readonly access?: number;
  readonly psn?: number;
  /** IBV_MTU_4096 = 5. */
  readonly pathMtu?: number;
  readonly timeout?: number;
  readonly retryCnt?: number;
  readonly rnrRetry?: number;
  readonly minRnrTimer?: number;
  readonly maxRdAtomic?: number;
}

/** struct ibv_mr as the NIC answers a registration: handle, keys, and the addresses it covers (addr is its iova). */
export interface HostMr {
  readonly mrHandle: number;
  readonly lkey: number;
  readonly rkey: number;
  readonly addr: bigint;
  readonly length: bigint;
}

/** A registry process as the NIC sees it: its pid and the credential that proves it. */
export interface ProcessIdentity {
  readonly pid: number;
  readonly credential: string;
}

type NicClient = Peer<typeof rdma.RdmaNicServiceDefinition>['client'];

/** struct ibv_qp_cap as ibv_create_qp() takes it: max_inline_data may be left out (0). */
export type QpCapRequest = Omit<rdma.QpCap, 'maxInlineData'> & { readonly maxInlineData?: number };

/**
 * How the context posts and polls: `user`, through queues in the process's
 * memory (libmlx5's way: no call per post or poll; needs a RegistrySession
 * that shares the NIC's tmpfs); `calls`, through PostSend/PostRecv/PollCq.
 */
export type QueueMode = 'user' | 'calls';

export interface VerbsContextOptions {
  /**
   * `user` or `calls`; by default user queues whenever the process is a
   * RegistrySession that can map the NIC's memory, calls otherwise (a
   * process on another host, a NIC without a doorbell socket).
   */
  readonly queues?: QueueMode;
}

/** The largest cqe and work queue the device takes (ibv_device_attr); a request past them is the NIC's to refuse, without a buffer. */
const MAX_CQE = (1 << 22) - 1;
const MAX_QP_WR = 1 << 15;
const MAX_SGE = 30;

/** The cqe a CQ gets for `cqe` (mlx5_create_cq(): a power-of-two ring of at least cqe + 1, one fewer reported). */
function grantedCqe(cqe: number): number {
  let ring = 1;
  while (ring < cqe + 1) ring *= 2;
  return ring - 1;
}

function isMemory(process: ProcessIdentity): process is ProcessIdentity & QueueMemory {
  return typeof (process as Partial<QueueMemory>).heapAllocate === 'function' && typeof (process as Partial<QueueMemory>).mmapFd === 'function';
}

/**
 * A verbs context (ibv_context) on one NIC over gRPC: every call carries
 * the process's pid and the context fd, as every ioctl on
 * /dev/infiniband/uverbsN carries its file, and the process's credential.
 * Methods resolve to the answer and reject with the NIC's errno (a
 * PeerError: an ErrnoError naming the verb). The streams (PostStream and the
 * watches) go through `client`, on the same channel.
 */
export class VerbsContext {
  readonly #peer: Peer<typeof rdma.RdmaNicServiceDefinition>;
  #user: UserQueues | undefined;
  #memory: QueueMemory | undefined;

  private constructor(
    peer: Peer<typeof rdma.RdmaNicServiceDefinition>,
    /** The NIC's grpc-js client, for the streams: it carries the credential too. */
    readonly client: rdma.RdmaNicServiceClient,
    readonly pid: number,
    readonly fd: number,
  ) {
    this.#peer = peer;
  }

  /** The user queues, when the context posts and polls in its own memory. */
  get userQueues(): UserQueues | undefined {
    return this.#user;
  }

  get queueMode(): QueueMode {
    return this.#user === undefined ? 'calls' : 'user';
  }

  /** A QP whose work queues are in this process's memory: its postSend()/postRecv() are plain function calls. */
  userQp(qpNum: number): UserQp | undefined {
    return this.#user?.qps.get(qpNum);
  }

  /** A CQ in this process's memory: its poll() is a plain function call. */
  userCq(cqHandle: number): UserCq | undefined {
    return this.#user?.cqs.get(cqHandle);
  }

  /**
   * ibv_open_device() on the NIC at `address`, for a registry process: a
   * RegistrySession (or anything with its pid and credential), whose
   * credential then goes with every call.
   */
  static async open(address: string, process: ProcessIdentity, tls: TlsConfig = loadTlsConfig(), options: VerbsContextOptions = {}): Promise<VerbsContext> {
    const peer = connectPeer(rdma.RdmaNicServiceDefinition, address, { name: 'rdma-nic', tls, token: process.credential });
    const client = new rdma.RdmaNicServiceClient(address, channelCredentials(tls), {
      channelOverride: peer.channel,
      interceptors: [bearerInterceptor(process.credential)],
    });
    const { pid } = process;
    let opened: number | undefined;
    try {
      const { fd } = await peer.client.openDevice({ pid });
      opened = fd;
      const context = new VerbsContext(peer, client, pid, fd);
      const wanted = options.queues ?? (isMemory(process) ? 'user' : 'calls');
      if (wanted === 'user') {
        if (!isMemory(process)) throw errno('EINVAL', 'user queues need the process\'s RegistrySession (its memory), not only its identity');
        try {
          context.#user = await UserQueues.open(process, (doorbellPageFd) => peer.client.openUserQueues({ pid, contextFd: fd, doorbellPageFd }));
          context.#memory = process;
        } catch (error) {
          // Asked for by default only: where they cannot be had, the context posts through calls.
          if (options.queues === 'user' || !userQueuesUnavailable(error)) throw error;
        }
      }
      return context;
    } catch (error) {
      peer.close();
      // The context file the open made goes with the failure.
      if (opened !== undefined && isMemory(process)) await process.closeFd(opened).catch(() => undefined);
      throw error;
    }
  }

  get #nic(): NicClient {
    return this.#peer.client;
  }

  get #ctx(): { pid: number; contextFd: number } {
    return { pid: this.pid, contextFd: this.fd };
  }

  queryDevice(): Promise<rdma.QueryDeviceResponse> {
    return this.#nic.queryDevice(this.#ctx);
  }

  queryPort(portNum = 1): Promise<rdma.QueryPortResponse> {
    return this.#nic.queryPort({ ...this.#ctx, portNum });
  }

  async allocPd(): Promise<number> {
    return (await this.#nic.allocPd(this.#ctx)).pdHandle;
  }

  async deallocPd(pdHandle: number): Promise<void> {
    await this.#nic.deallocPd({ ...this.#ctx, pdHandle });
  }

  /** ibv_reg_mr_iova() on [offset, offset + length) of the system-heap dma-buf heapFd. */
  regMr(pdHandle: number, mr: { heapFd: number; offset?: number; length: number; iova: number; access: number }): Promise<HostMr> {
    return this.#nic.regMr({ ...this.#ctx, pdHandle, heapFd: mr.heapFd, offset: BigInt(mr.offset ?? 0), length: BigInt(mr.length), iova: BigInt(mr.iova), access: mr.access });
  }

  /** ibv_reg_dmabuf_mr(). */
  regDmabufMr(pdHandle: number, mr: { fd: number; offset: number; length: number; iova: number; access: number }): Promise<HostMr> {
    return this.#nic.regDmabufMr({ ...this.#ctx, pdHandle, fd: mr.fd, offset: BigInt(mr.offset), length: BigInt(mr.length), iova: BigInt(mr.iova), access: mr.access });
  }

  /**
   * ibv_rereg_mr() of an MR of regMr(): `flags` IBV_REREG_MR_CHANGE_*; a
   * new translation takes heapFd/offset/length/iova as regMr() does. The
   * keys stay; the answer gives the addresses the MR now covers.
   */
  reregMr(mrHandle: number, flags: number, change: { pdHandle?: number; heapFd?: number; offset?: number; length?: number; iova?: number; access?: number }): Promise<rdma.ReregMrResponse> {
    return this.#nic.reregMr({
      ...this.#ctx,
      mrHandle,
      flags,
      pdHandle: change.pdHandle ?? 0,
      heapFd: change.heapFd ?? -1,
      offset: BigInt(change.offset ?? 0),
      length: BigInt(change.length ?? 0),
      iova: BigInt(change.iova ?? 0),
      access: change.access ?? 0,
    });
  }

  async deregMr(mrHandle: number): Promise<void> {
    await this.#nic.deregMr({ ...this.#ctx, mrHandle });
  }

  /** ibv_create_cq(); with user queues the CQ's ring is in this process's memory. */
  async createCq(cqe: number): Promise<rdma.CreateCqResponse> {
    const user = this.#user;
    if (user === undefined || !Number.isInteger(cqe) || cqe < 1 || cqe > MAX_CQE) return this.#nic.createCq({ ...this.#ctx, cqe });
    const memory = this.#memory!;
    const buffer = await MappedBuffer.allocate(memory, cqRingBytes(grantedCqe(cqe)));
    try {
      const created = await this.#nic.createCq({ ...this.#ctx, cqe, ringFd: buffer.fd });
      await buffer.pinned(memory);
      user.cqs.set(created.cqHandle, new UserCq(created.cqHandle, created.cqe, buffer, user.qps));
      return created;
    } catch (error) {
      await buffer.release(memory);
      throw error;
    }
  }

  async destroyCq(cqHandle: number): Promise<void> {
    await this.#nic.destroyCq({ ...this.#ctx, cqHandle });
    const cq = this.#user?.cqs.get(cqHandle);
    if (cq !== undefined) {
      this.#user!.cqs.delete(cqHandle);
      cq.close();
      await cq.buffer.release(this.#memory!);
    }
  }

  /**
   * ibv_poll_cq(): in this process's memory for a user CQ, else a PollCq
   * call. An empty user CQ resolves after a turn of the event loop, so that
   * a loop of awaited polls (correct over calls) does not spin in
   * microtasks and starve the process's I/O; userCq(h).poll() is the
   * synchronous one.
   */
  async pollCq(cqHandle: number, maxEntries: number): Promise<rdma.WorkCompletion[]> {
    const cq = this.#user?.cqs.get(cqHandle);
    if (cq !== undefined) {
      const wcs = cq.poll(maxEntries);
      if (wcs.length === 0) await new Promise<void>((resolve) => setImmediate(resolve));
      return wcs;
    }
    return (await this.#nic.pollCq({ ...this.#ctx, cqHandle, maxEntries })).completions;
  }

  /** ibv_req_notify_cq(cq, 0) on a user CQ: its next completion raises an event (getCqEvent()). */
  reqNotifyCq(cqHandle: number): void {
    this.#requireUserCq(cqHandle).reqNotify();
  }

  /** ibv_get_cq_event() for one user CQ: resolves at its next completion event. */
  getCqEvent(cqHandle: number): Promise<void> {
    return this.#requireUserCq(cqHandle).getEvent();
  }

  #requireUserCq(cqHandle: number): UserCq {
    const cq = this.#user?.cqs.get(cqHandle);
    if (cq === undefined) throw errno('EINVAL', `CQ ${cqHandle} is not a CQ in this process's memory`);
    return cq;
  }

  /** ibv_create_qp(); with user queues, and both CQs in user memory, its work queues are in this process's memory. */
  async createQp(qp: { pdHandle: number; sendCqHandle: number; recvCqHandle: number; cap: QpCapRequest; sqSigAll?: boolean }): Promise<rdma.CreateQpResponse> {
    const request = { ...this.#ctx, ...qp, cap: { ...qp.cap, maxInlineData: qp.cap.maxInlineData ?? 0 }, sqSigAll: qp.sqSigAll ?? false };
    const user = this.#user;
    const { cap } = qp;
    const inRange = (value: number, max: number): boolean => Number.isInteger(value) && value >= 1 && value <= max;
    const userCqs = user !== undefined && user.cqs.has(qp.sendCqHandle) && user.cqs.has(qp.recvCqHandle);
    if (!userCqs || !inRange(cap.maxSendWr, MAX_QP_WR) || !inRange(cap.maxRecvWr, MAX_QP_WR) || !inRange(cap.maxSendSge, MAX_SGE) || !inRange(cap.maxRecvSge, MAX_SGE)) {
      return this.#nic.createQp(request);
    }
    const memory = this.#memory!;
    const buffer = await MappedBuffer.allocate(memory, qpRingBytes(cap));
    try {
      const created = await this.#nic.createQp({ ...request, ringFd: buffer.fd });
      await buffer.pinned(memory);
      user.qps.set(created.qpNum, new UserQp(created.qpNum, created.cap!, buffer, user.ring));
      return created;
    } catch (error) {
      await buffer.release(memory);
      throw error;
    }
  }

  /**
   * ibv_create_qp_ex() with IBV_QP_INIT_ATTR_SEND_OPS_FLAGS: a QP posted
   * through the ibv_wr_*() calls (QpEx). A provider feature: it needs user
   * queues (EOPNOTSUPP without), and send ops this device does not run are
   * EOPNOTSUPP.
   */
  async createQpEx(qp: { pdHandle: number; sendCqHandle: number; recvCqHandle: number; cap: QpCapRequest; sqSigAll?: boolean; sendOpsFlags: number }): Promise<QpEx> {
    if (!Number.isInteger(qp.sendOpsFlags) || qp.sendOpsFlags < 0 || (qp.sendOpsFlags & ~QP_EX_SUPPORTED_SEND_OPS) !== 0) {
      throw errno('EOPNOTSUPP', `send_ops_flags 0x${qp.sendOpsFlags.toString(16)}: this device runs 0x${QP_EX_SUPPORTED_SEND_OPS.toString(16)}`);
    }
    if (this.#user === undefined) throw errno('EOPNOTSUPP', 'ibv_wr_*() posts into user queues, which this context does not have');
    if (!this.#user.cqs.has(qp.sendCqHandle) || !this.#user.cqs.has(qp.recvCqHandle)) throw errno('EINVAL', 'an extended QP completes on CQs in user memory');
    const { sendOpsFlags, ...create } = qp;
    const { qpNum } = await this.createQp(create);
    const userQp = this.#user.qps.get(qpNum);
    if (userQp === undefined) {
      await this.destroyQp(qpNum).catch(() => undefined);
      throw errno('EINVAL', `QP ${qpNum} got no user queues (caps outside the device's)`);
    }
    return new QpEx(userQp, sendOpsFlags);
  }

  async modifyQp(qpNum: number, attr: Partial<rdma.QpAttr>, attrMask: number): Promise<void> {
    await this.#nic.modifyQp({ ...this.#ctx, qpNum, attr: rdma.QpAttr.fromPartial(attr), attrMask });
    const qp = this.#user?.qps.get(qpNum);
    if (qp !== undefined && (attrMask & IBV_QP_STATE) !== 0 && attr.qpState !== undefined) {
      qp.state = attr.qpState;
      if (attr.qpState === rdma.QpState.QP_STATE_RESET) qp.reset();
    }
  }

  async queryQp(qpNum: number): Promise<rdma.QpAttr> {
    return (await this.#nic.queryQp({ ...this.#ctx, qpNum })).attr!;
  }

  /** ibv_query_qp()'s init_attr.cap: the capacities the QP was created with (rounded up as created). */
  async queryQpCap(qpNum: number): Promise<rdma.QpCap> {
    return (await this.#nic.queryQp({ ...this.#ctx, qpNum })).cap!;
  }

  async destroyQp(qpNum: number): Promise<void> {
    await this.#nic.destroyQp({ ...this.#ctx, qpNum });
    const qp = this.#user?.qps.get(qpNum);
    if (qp !== undefined) {
      this.#user!.qps.delete(qpNum);
      await qp.buffer.release(this.#memory!);
    }
  }

  /** RESET -> INIT -> RTR -> RTS towards `peer`, with the attributes each transition requires. */
  async connectRc(qpNum: number, peer: RcPeer, options: RcOptions = {}): Promise<void> {
    await this.modifyQp(
      qpNum,
      { qpState: rdma.QpState.QP_STATE_INIT, pkeyIndex: 0, portNum: 1, qpAccessFlags: options.access ?? 0 },
      IBV_QP_STATE | IBV_QP_PKEY_INDEX | IBV_QP_PORT | IBV_QP_ACCESS_FLAGS,
    );
    await this.modifyQp(
      qpNum,
      {
        qpState: rdma.QpState.QP_STATE_RTR,
        pathMtu: options.pathMtu ?? 5,
        destQpNum: peer.qpNum,
        dgid: Buffer.from(peer.gid),
        rqPsn: peer.psn ?? 0,
        maxDestRdAtomic: options.maxRdAtomic ?? 16,
        minRnrTimer: options.minRnrTimer ?? 12,
      },
      IBV_QP_STATE | IBV_QP_AV | IBV_QP_PATH_MTU | IBV_QP_DEST_QPN | IBV_QP_RQ_PSN | IBV_QP_MAX_DEST_RD_ATOMIC | IBV_QP_MIN_RNR_TIMER,
    );
    await this.modifyQp(
      qpNum,
      {
        qpState: rdma.QpState.QP_STATE_RTS,
        timeout: options.timeout ?? 14,
        retryCnt: options.retryCnt ?? 7,
        rnrRetry: options.rnrRetry ?? 7,
        sqPsn: options.psn ?? 0,
        maxRdAtomic: options.maxRdAtomic ?? 16,
      },
      IBV_QP_STATE | IBV_QP_TIMEOUT | IBV_QP_RETRY_CNT | IBV_QP_RNR_RETRY | IBV_QP_SQ_PSN | IBV_QP_MAX_QP_RD_ATOMIC,
    );
  }

  /** ibv_post_send(); a bad WR rejects with its errno (the ones before it were posted). */
  async postSend(qpNum: number, wrs: rdma.SendWr[]): Promise<number> {
    const qp = this.#user?.qps.get(qpNum);
    if (qp !== undefined) return qp.postSend(wrs);
    return (await this.#nic.postSend({ ...this.#ctx, qpNum, wrs })).posted;
  }

  async postRecv(qpNum: number, wrs: rdma.RecvWr[]): Promise<number> {
    const qp = this.#user?.qps.get(qpNum);
    if (qp !== undefined) return qp.postRecv(wrs);
    return (await this.#nic.postRecv({ ...this.#ctx, qpNum, wrs })).posted;
  }

  /** A stream for posting packed WQEs to one QP at message rate: into its send queue for a QP with user queues. */
  openPostStream(qpNum: number): PostStream {
    const qp = this.#user?.qps.get(qpNum);
    if (qp !== undefined) return new RingPostStream(qp);
    return new CallPostStream(this.client.postStream(), this.pid, this.fd, qpNum);
  }

  /**
   * Completions of `cqHandle` as they are written (the watch polls them):
   * `onBatch` gets each message; returns the cancel.
   */
  watchCompletions(cqHandle: number, packed: boolean, onBatch: (batch: rdma.WatchCompletionsResponse) => void, onEnd?: (error?: Error) => void): () => void {
    const cq = this.#user?.cqs.get(cqHandle);
    if (cq !== undefined) {
      const none = Buffer.alloc(0);
      return cq.watch((wcs) => onBatch(packed ? { completions: [], packedCqes: encodeCqes(wcs) } : { completions: wcs, packedCqes: none }), onEnd);
    }
    const call = this.client.watchCompletions({ ...this.#ctx, cqHandle, packed });
    call.on('data', onBatch);
    call.on('error', (error: Error) => onEnd?.(error));
    call.on('end', () => onEnd?.());
    return () => call.cancel();
  }

  /** ibv_get_async_event() as a stream; returns the cancel. */
  watchAsyncEvents(onEvent: (event: rdma.WatchAsyncEventsResponse) => void): () => void {
    const call = this.client.watchAsyncEvents(this.#ctx);
    call.on('data', onEvent);
    call.on('error', () => undefined);
    return () => call.cancel();
  }

  /** Closes the gRPC channel. The context file itself is closed through the registry (close(fd)). */
  close(): void {
    this.#user?.close();
    this.#peer.close();
  }
}
