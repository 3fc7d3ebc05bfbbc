import { bearerInterceptor, channelCredentials, loadTlsConfig, type TlsConfig } from '@p2p/auth';
import { rdma } from '@p2p/proto';
import { IBV_QP_ACCESS_FLAGS, IBV_QP_AV, IBV_QP_DEST_QPN, IBV_QP_MAX_DEST_RD_ATOMIC, IBV_QP_MAX_QP_RD_ATOMIC, IBV_QP_MIN_RNR_TIMER, IBV_QP_PATH_MTU, IBV_QP_PKEY_INDEX, IBV_QP_PORT, IBV_QP_RETRY_CNT, IBV_QP_RNR_RETRY, IBV_QP_RQ_PSN, IBV_QP_SQ_PSN, IBV_QP_STATE, IBV_QP_TIMEOUT } from '../abi/qp-attr-mask';
import { PostStream } from './post-stream';
import { unary } from './unary';

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

export interface HostMr {
  readonly mrHandle: number;
  readonly lkey: number;
  readonly rkey: number;
}

/** A registry process as the NIC sees it: its pid and the credential that proves it. */
export interface ProcessIdentity {
  readonly pid: number;
  readonly credential: string;
}

/**
 * A verbs context (ibv_context) on one NIC over gRPC: every call carries
 * the process's pid and the context fd, as every ioctl on
 * /dev/infiniband/uverbsN carries its file. Methods resolve to the answer
 * and reject with the gRPC error, whose errno errnoOf() reads.
 */
export class VerbsContext {
  private constructor(
    readonly client: rdma.RdmaNicServiceClient,
    readonly pid: number,
    readonly fd: number,
    readonly ownsClient: boolean,
  ) {}

  /**
   * ibv_open_device() on the NIC at `address`, for a registry process: a
   * RegistrySession (or anything with its pid and credential), whose
   * credential then goes with every call of the new client. A client passed
   * in is used as it is: it must carry the credential itself.
   */
  static async open(address: string | rdma.RdmaNicServiceClient, process: ProcessIdentity, tls: TlsConfig = loadTlsConfig()): Promise<VerbsContext> {
    const owns = typeof address === 'string';
    const client =
      typeof address === 'string'
        ? new rdma.RdmaNicServiceClient(address, channelCredentials(tls), { interceptors: [bearerInterceptor(process.credential)] })
        : address;
    const { pid } = process;
    try {
      const { fd } = await unary<rdma.OpenDeviceResponse>((cb) => client.openDevice({ pid }, cb));
      return new VerbsContext(client, pid, fd, owns);
    } catch (error) {
      if (owns) client.close();
      throw error;
    }
  }

  get #ctx(): { pid: number; contextFd: number } {
    return { pid: this.pid, contextFd: this.fd };
  }

  queryDevice(): Promise<rdma.QueryDeviceResponse> {
    return unary((cb) => this.client.queryDevice(this.#ctx, cb));
  }

  queryPort(portNum = 1): Promise<rdma.QueryPortResponse> {
    return unary((cb) => this.client.queryPort({ ...this.#ctx, portNum }, cb));
  }

  async allocPd(): Promise<number> {
    return (await unary<rdma.AllocPdResponse>((cb) => this.client.allocPd(this.#ctx, cb))).pdHandle;
  }

  async deallocPd(pdHandle: number): Promise<void> {
    await unary((cb) => this.client.deallocPd({ ...this.#ctx, pdHandle }, cb));
  }

  /** ibv_reg_mr_iova() on [offset, offset + length) of the system-heap dma-buf heapFd. */
  regMr(pdHandle: number, mr: { heapFd: number; offset?: number; length: number; iova: number; access: number }): Promise<HostMr> {
    return unary((cb) =>
      this.client.regMr(
        { ...this.#ctx, pdHandle, heapFd: mr.heapFd, offset: BigInt(mr.offset ?? 0), length: BigInt(mr.length), iova: BigInt(mr.iova), access: mr.access },
        cb,
      ),
    );
  }

  /** ibv_reg_dmabuf_mr(). */
  regDmabufMr(pdHandle: number, mr: { fd: number; offset: number; length: number; iova: number; access: number }): Promise<HostMr> {
    return unary((cb) =>
      this.client.regDmabufMr(
        { ...this.#ctx, pdHandle, fd: mr.fd, offset: BigInt(mr.offset), length: BigInt(mr.length), iova: BigInt(mr.iova), access: mr.access },
        cb,
      ),
    );
  }

  async deregMr(mrHandle: number): Promise<void> {
    await unary((cb) => this.client.deregMr({ ...this.#ctx, mrHandle }, cb));
  }

  createCq(cqe: number): Promise<rdma.CreateCqResponse> {
    return unary((cb) => this.client.createCq({ ...this.#ctx, cqe }, cb));
  }

  async destroyCq(cqHandle: number): Promise<void> {
    await unary((cb) => this.client.destroyCq({ ...this.#ctx, cqHandle }, cb));
  }

  async pollCq(cqHandle: number, maxEntries: number): Promise<rdma.WorkCompletion[]> {
    return (await unary<rdma.PollCqResponse>((cb) => this.client.pollCq({ ...this.#ctx, cqHandle, maxEntries }, cb))).completions;
  }

  createQp(qp: { pdHandle: number; sendCqHandle: number; recvCqHandle: number; cap: rdma.QpCap; sqSigAll?: boolean }): Promise<rdma.CreateQpResponse> {
    return unary((cb) => this.client.createQp({ ...this.#ctx, ...qp, sqSigAll: qp.sqSigAll ?? false }, cb));
  }

  async modifyQp(qpNum: number, attr: Partial<rdma.QpAttr>, attrMask: number): Promise<void> {
    await unary((cb) => this.client.modifyQp({ ...this.#ctx, qpNum, attr: rdma.QpAttr.fromPartial(attr), attrMask }, cb));
  }

  async queryQp(qpNum: number): Promise<rdma.QpAttr> {
    return (await unary<rdma.QueryQpResponse>((cb) => this.client.queryQp({ ...this.#ctx, qpNum }, cb))).attr!;
  }

  async destroyQp(qpNum: number): Promise<void> {
    await unary((cb) => this.client.destroyQp({ ...this.#ctx, qpNum }, cb));
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
    return (await unary<rdma.PostSendResponse>((cb) => this.client.postSend({ ...this.#ctx, qpNum, wrs }, cb))).posted;
  }

  async postRecv(qpNum: number, wrs: rdma.RecvWr[]): Promise<number> {
    return (await unary<rdma.PostRecvResponse>((cb) => this.client.postRecv({ ...this.#ctx, qpNum, wrs }, cb))).posted;
  }

  /** A stream for posting packed WQEs to one QP at message rate. */
  openPostStream(qpNum: number): PostStream {
    return new PostStream(this.client.postStream(), this.pid, this.fd, qpNum);
  }

  /**
   * Completions of `cqHandle` as they are written (the watch polls them):
   * `onBatch` gets each message; returns the cancel.
   */
  watchCompletions(cqHandle: number, packed: boolean, onBatch: (batch: rdma.WatchCompletionsResponse) => void, onEnd?: (error?: Error) => void): () => void {
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

  /** Closes the gRPC channel if this context opened it. The context file itself is closed through the registry (close(fd)). */
  close(): void {
    if (this.ownsClient) this.client.close();
  }
}
