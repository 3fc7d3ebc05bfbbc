import { bearerInterceptor, channelCredentials, loadTlsConfig, type TlsConfig } from '@p2p/auth';
import { rdma } from '@p2p/proto';
import { connectPeer, type Peer } from '@p2p/rpc';
import { IBV_QP_ACCESS_FLAGS, IBV_QP_AV, IBV_QP_DEST_QPN, IBV_QP_MAX_DEST_RD_ATOMIC, IBV_QP_MAX_QP_RD_ATOMIC, IBV_QP_MIN_RNR_TIMER, IBV_QP_PATH_MTU, IBV_QP_PKEY_INDEX, IBV_QP_PORT, IBV_QP_RETRY_CNT, IBV_QP_RNR_RETRY, IBV_QP_RQ_PSN, IBV_QP_SQ_PSN, IBV_QP_STATE, IBV_QP_TIMEOUT } from '../abi/qp-attr-mask';
import { PostStream } from './post-stream';

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

type NicClient = Peer<typeof rdma.RdmaNicServiceDefinition>['client'];

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

  private constructor(
    peer: Peer<typeof rdma.RdmaNicServiceDefinition>,
    /** The NIC's grpc-js client, for the streams: it carries the credential too. */
    readonly client: rdma.RdmaNicServiceClient,
    readonly pid: number,
    readonly fd: number,
  ) {
    this.#peer = peer;
  }

  /**
   * ibv_open_device() on the NIC at `address`, for a registry process: a
   * RegistrySession (or anything with its pid and credential), whose
   * credential then goes with every call.
   */
  static async open(address: string, process: ProcessIdentity, tls: TlsConfig = loadTlsConfig()): Promise<VerbsContext> {
    const peer = connectPeer(rdma.RdmaNicServiceDefinition, address, { name: 'rdma-nic', tls, token: process.credential });
    const client = new rdma.RdmaNicServiceClient(address, channelCredentials(tls), {
      channelOverride: peer.channel,
      interceptors: [bearerInterceptor(process.credential)],
    });
    const { pid } = process;
    try {
      const { fd } = await peer.client.openDevice({ pid });
      return new VerbsContext(peer, client, pid, fd);
    } catch (error) {
      peer.close();
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

  async deregMr(mrHandle: number): Promise<void> {
    await this.#nic.deregMr({ ...this.#ctx, mrHandle });
  }

  createCq(cqe: number): Promise<rdma.CreateCqResponse> {
    return this.#nic.createCq({ ...this.#ctx, cqe });
  }

  async destroyCq(cqHandle: number): Promise<void> {
    await this.#nic.destroyCq({ ...this.#ctx, cqHandle });
  }

  async pollCq(cqHandle: number, maxEntries: number): Promise<rdma.WorkCompletion[]> {
    return (await this.#nic.pollCq({ ...this.#ctx, cqHandle, maxEntries })).completions;
  }

  createQp(qp: { pdHandle: number; sendCqHandle: number; recvCqHandle: number; cap: rdma.QpCap; sqSigAll?: boolean }): Promise<rdma.CreateQpResponse> {
    return this.#nic.createQp({ ...this.#ctx, ...qp, sqSigAll: qp.sqSigAll ?? false });
  }

  async modifyQp(qpNum: number, attr: Partial<rdma.QpAttr>, attrMask: number): Promise<void> {
    await this.#nic.modifyQp({ ...this.#ctx, qpNum, attr: rdma.QpAttr.fromPartial(attr), attrMask });
  }

  async queryQp(qpNum: number): Promise<rdma.QpAttr> {
    return (await this.#nic.queryQp({ ...this.#ctx, qpNum })).attr!;
  }

  async destroyQp(qpNum: number): Promise<void> {
    await this.#nic.destroyQp({ ...this.#ctx, qpNum });
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
    return (await this.#nic.postSend({ ...this.#ctx, qpNum, wrs })).posted;
  }

  async postRecv(qpNum: number, wrs: rdma.RecvWr[]): Promise<number> {
    return (await this.#nic.postRecv({ ...this.#ctx, qpNum, wrs })).posted;
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

  /** Closes the gRPC channel. The context file itself is closed through the registry (close(fd)). */
  close(): void {
    this.#peer.close();
  }
}
