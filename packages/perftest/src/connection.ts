import { IBV_ACCESS_LOCAL_WRITE, IBV_ACCESS_REMOTE_READ, IBV_ACCESS_REMOTE_WRITE, type RcOptions, type VerbsContext } from '@p2p/verbs';

/** What a test asks of every region: the requester writes into its own on READ, the responder is written and read. */
export const PERF_ACCESS = IBV_ACCESS_LOCAL_WRITE | IBV_ACCESS_REMOTE_WRITE | IBV_ACCESS_REMOTE_READ;

/** One side of a test: a verbs context on a NIC, a PD, and the port's GID the other side connects to. */
export interface RdmaEnd {
  readonly ctx: VerbsContext;
  readonly pd: number;
  readonly gid: Uint8Array;
}

/** A registered range the test's messages cycle through: lkey for the local side's SGEs, rkey for the remote's. */
export interface MemoryRegion {
  readonly lkey: number;
  readonly rkey: number;
  readonly iova: number;
  readonly length: number;
}

/** Where a watch's completion batches go: each test run routes them to itself. */
export interface CompletionRoute {
  onBatch: (packedCqes: Uint8Array) => void;
  /** Why the watch ended, if it did. */
  ended: string | undefined;
}

/** perftest's queue sizes for the requester (its --tx-depth fits below maxSendWr) and the responder's defaults. */
const REQUESTER_QUEUES = { cqe: 65535, maxSendWr: 8192 };
const RESPONDER_QUEUES = { cqe: 4095, maxSendWr: 1024 };

/**
 * One RC QP pair of a test: the requester's QP posts, the responder's only
 * answers (RDMA WRITE and READ need no receive WQEs). The requester's CQ has
 * one watcher for the pair's life (a CQ takes one: EBUSY for a second, and a
 * cancel reaches the NIC only some time after the client sends it); each run
 * routes its batches through `completions`.
 */
export class QpConnection {
  readonly completions: CompletionRoute = { onBatch: () => undefined, ended: undefined };
  #stopWatch: () => void = () => undefined;

  private constructor(
    readonly requester: RdmaEnd,
    readonly responder: RdmaEnd,
    readonly qpNum: number,
    readonly cq: number,
    readonly remoteQpNum: number,
    readonly remoteCq: number,
    readonly local: MemoryRegion,
    readonly remote: MemoryRegion,
  ) {}

  /**
   * Creates both QPs, takes them RESET -> RTS towards each other, and starts
   * the completion watch. `transport` sets the requester's ack timeout and
   * retry count (perftest's -u; ibv_modify_qp's defaults, 14 and 7, unless told).
   */
  static async connect(requester: RdmaEnd, responder: RdmaEnd, local: MemoryRegion, remote: MemoryRegion, transport: Pick<RcOptions, 'timeout' | 'retryCnt'> = {}): Promise<QpConnection> {
    const a = await rcQp(requester, REQUESTER_QUEUES);
    let b: { cq: number; qpNum: number } | undefined;
    try {
      b = await rcQp(responder, RESPONDER_QUEUES);
      await requester.ctx.connectRc(a.qpNum, { gid: responder.gid, qpNum: b.qpNum }, { ...transport, access: PERF_ACCESS });
      await responder.ctx.connectRc(b.qpNum, { gid: requester.gid, qpNum: a.qpNum }, { ...transport, access: PERF_ACCESS });
    } catch (error) {
      await destroyRcQp(requester, a).catch(() => undefined);
      if (b !== undefined) await destroyRcQp(responder, b).catch(() => undefined);
      throw error;
    }
    const connection = new QpConnection(requester, responder, a.qpNum, a.cq, b.qpNum, b.cq, local, remote);
    const route = connection.completions;
    connection.#stopWatch = requester.ctx.watchCompletions(
      a.cq,
      true,
      (batch) => route.onBatch(batch.packedCqes),
      (error) => {
        route.ended = `the completion watch ended${error ? `: ${error.message}` : ''}`;
        route.onBatch(new Uint8Array(0));
      },
    );
    return connection;
  }

  /** Stops the watch and destroys both QPs and their CQs. */
  async close(): Promise<void> {
    this.#stopWatch();
    await destroyRcQp(this.requester, { qpNum: this.qpNum, cq: this.cq });
    await destroyRcQp(this.responder, { qpNum: this.remoteQpNum, cq: this.remoteCq });
  }
}

async function rcQp(end: RdmaEnd, queues: { cqe: number; maxSendWr: number }): Promise<{ cq: number; qpNum: number }> {
  const { cqHandle } = await end.ctx.createCq(queues.cqe);
  try {
    const { qpNum } = await end.ctx.createQp({
      pdHandle: end.pd,
      sendCqHandle: cqHandle,
      recvCqHandle: cqHandle,
      cap: { maxSendWr: queues.maxSendWr, maxRecvWr: 256, maxSendSge: 1, maxRecvSge: 1 },
    });
    return { cq: cqHandle, qpNum };
  } catch (error) {
    await end.ctx.destroyCq(cqHandle);
    throw error;
  }
}

/** ibv_destroy_qp, then ibv_destroy_cq: a CQ with a QP on it is busy. */
async function destroyRcQp(end: RdmaEnd, qp: { cq: number; qpNum: number }): Promise<void> {
  await end.ctx.destroyQp(qp.qpNum);
  await end.ctx.destroyCq(qp.cq);
}
