import { errno, type ErrnoError } from '@p2p/errno';
import type { CompletionQueue, WorkQueueOwner } from '../cq/completion-queue';
import type { AsyncEvents } from '../events/async-events';
import type { ProtectionDomain } from '../mr/protection-domain';
import { IBV_SEND_FENCE, IBV_SEND_SIGNALED } from '../verbs/send-flags';
import { AsyncEventType, QpState, WcOpcode, WcStatus, WrOpcode } from '../verbs/enums';
import { IBV_QP_EN_SQD_ASYNC_NOTIFY, IBV_QP_STATE } from '../verbs/qp-attr-mask';
import { applyAttr, checkAttrValues, resetAttr, type QpAttr } from './qp-attr';
import { modifyQpRejection } from './state-table';
import type { PostResult, RecvWr, SendWr } from './work-request';
import { PSN_MASK, ackTimeoutMs, rnrTimerMs, type WireResponse } from '../transport/fabric';
import { isReadLike, RNR_RETRY_INFINITE } from '../transport/requester';
import { wrOpcode } from '../transport/opcodes';
import { judgeAnswer, recvCompletion, sendCompletion } from '../transport/completer';

/** Atomic originals a responder keeps for duplicates (mlx5's max_dest_rd_atomic is 16; twice that is plenty). */
const MAX_SAVED_ATOMICS = 32;

/** struct ibv_qp_cap. */
export interface QpCap {
  readonly maxSendWr: number;
  readonly maxRecvWr: number;
  readonly maxSendSge: number;
  readonly maxRecvSge: number;
  /** Inline data a send may carry: 0 on this device (absent means 0). */
  readonly maxInlineData?: number;
}

/**
 * What the QP needs of its NIC to run send WRs: the local checks, the
 * request on the fabric, and the landing of an answer in local memory.
 */
export interface SendEngine {
  /** Local checks and SGE views: SUCCESS, a completion status, or a page fault to wait for. */
  prepare(qp: QueuePair, wr: SendWr, local: Uint8Array[]): WcStatus | Promise<void>;
  /** Put the request on the wire; `reply` runs once, now or later. */
  transmit(qp: QueuePair, wr: SendWr, psn: number, local: readonly Uint8Array[], timeoutMs: number, reply: (response: WireResponse | undefined) => void): void;
  /** A successful answer lands in local memory: SUCCESS, or LOC_PROT_ERR if the pages went away. */
  land(qp: QueuePair, wr: SendWr, response: WireResponse): WcStatus;
}

/** A send WR posted and not yet on the wire; `localError`: a WQE the NIC could not run, completed with that status in its turn. */
interface Queued {
  readonly wr: SendWr;
  readonly seq: number;
  readonly localError?: WcStatus;
}

/** A WQE read from a send queue in user memory that is no work request (EINVAL at post time on the gRPC path). */
export interface BadWqe {
  readonly wrId: bigint;
  readonly reason: string;
}

/** A send WR on the wire, in PSN order, until it completes. */
interface InFlight {
  readonly wr: SendWr;
  readonly seq: number;
  readonly localError?: WcStatus;
  readonly psn: number;
  /** PENDING until answered (or failed locally). */
  status: number;
  /** Bumps on every transmission: an answer to an older one is ignored. */
  attempt: number;
  retries: number;
  rnrNaks: number;
}

const PENDING = -2;


/**
 * An RC ibv_qp: its state machine (ib_modify_qp_is_ok()), its send and
 * receive queues and the completions it writes.
 *
 * The requester: in RTS, send WRs go on the wire in post order, each with
 * the next PSN, many in flight at once (READs and atomics up to
 * max_rd_atomic; a FENCE waits for them). Completions are written in PSN
 * order whatever order answers arrive in; the first error completes its WR
 * with that status and flushes every later one (the QP goes to ERR).
 * No answer within the local ACK timeout is retried with the same PSN up to
 * retry_cnt times, then RETRY_EXC_ERR. An RNR NAK rewinds the send queue to
 * that WR (the responder drops what followed it) and retries after the RNR
 * timer or the responder's hint, up to rnr_retry times (forever with 7),
 * then RNR_RETRY_EXC_ERR. A local page fault holds the queue until it
 * finishes.
 *
 * The responder: executes each PSN once, in order; a duplicate (a
 * retransmission whose answer was lost) is acknowledged without being
 * executed again (READs are re-read, atomics answer their saved original);
 * a PSN ahead of the expected one is dropped.
 *
 * Queue slots free when the completion of an entry (or of a later one) is
 * polled, as the provider's wq tail moves in mlx5_poll_one().
 */
export class QueuePair implements WorkQueueOwner {
  #state: QpState = QpState.RESET;
  #attr: QpAttr = resetAttr();
  /** The local ACK timeout of `timeout`, worked out once per modify rather than per transmission. */
  #ackTimeoutMs = ackTimeoutMs(0);
  /** Posted send WRs not yet on the wire, with their send-queue sequence numbers. */
  #sq: Queued[] = [];
  #sqHead = 0;
  #inflight: InFlight[] = [];
  #inflightHead = 0;
  #readsInFlight = 0;
  #nextPsn = 0;
  /** The responder's expected PSN, and the originals of recent atomics for their duplicates. */
  #ePsn = 0;
  readonly #atomicOriginals = new Map<number, bigint>();
  /** Waiting on an RNR NAK (until the timer or the hint) or a local page fault. */
  #waiting: 'rnr' | 'fault' | undefined;
  #rnrTimer: NodeJS.Timeout | undefined;
  /** RNR NAKs taken by WRs rewound into the send queue (by sequence number), so their count survives the rewind. */
  readonly #rnrCounts = new Map<number, number>();
  #sqPosted = 0;
  #sqRetired = 0;
  #rq: (RecvWr | undefined)[] = [];
  #rqHead = 0;
  #rqPosted = 0;
  #rqRetired = 0;
  #sqdNotify = false;
  #progressing = false;
  #again = false;
  /** The work queues are rings in the process's memory: it counts free slots itself, and the NIC fetches what fits. */
  #userQueues = false;

  /** The responder answered RNR and owes the requester a retry when a receive is posted. */
  rnrNakSent = false;
  /** IBV_EVENT_COMM_EST was raised for this RTR period. */
  commEstablished = false;
  /** Transport retries (no answer) and RNR retries made, for tests and metrics. */
  retries = 0;
  rnrRetries = 0;
  /** Messages sent again because the responder could no longer reach their memory (REFETCH). */
  refetches = 0;

  constructor(
    readonly qpNum: number,
    readonly pd: ProtectionDomain,
    readonly sendCq: CompletionQueue,
    readonly recvCq: CompletionQueue,
    readonly cap: QpCap,
    readonly sqSigAll: boolean,
    private readonly events: AsyncEvents,
    private readonly engine: SendEngine,
  ) {}

  get state(): QpState {
    return this.#state;
  }

  /** The QP's work queues live in its process's memory (CreateQp with a ring): posting goes through postFromRing()/postRecv(). */
  useUserQueues(): void {
    this.#userQueues = true;
  }

  get inUserMemory(): boolean {
    return this.#userQueues;
  }

  /** Send WRs fetched and not completed: the NIC fetches no more than its queue holds. */
  get sendOutstanding(): number {
    return this.#sq.length - this.#sqHead + (this.#inflight.length - this.#inflightHead);
  }

  /** Receive WRs fetched and not consumed. */
  get recvOutstanding(): number {
    return this.#rq.length - this.#rqHead;
  }

  /**
   * WQEs the NIC fetched from a send queue in user memory, in order. What
   * ibv_post_send() would refuse with EINVAL (a bad opcode, too many SGEs,
   * a WQE that is none) was the process's library's to refuse: the NIC
   * completes it with IBV_WC_LOC_QP_OP_ERR in its turn, and the QP goes to
   * ERR, as an HCA does with a malformed WQE. In ERR each is flushed.
   */
  postFromRing(wqes: readonly (SendWr | BadWqe)[]): void {
    for (const wqe of wqes) {
      const seq = this.#sqPosted++;
      const bad = 'reason' in wqe || this.#checkSend(wqe) !== undefined;
      const wr: SendWr = 'reason' in wqe ? { wrId: wqe.wrId, opcode: WrOpcode.SEND, sgList: [], sendFlags: IBV_SEND_SIGNALED } : wqe;
      if (this.#state === QpState.ERR) {
        this.#completeSend(wr, seq, WcStatus.WR_FLUSH_ERR);
      } else if (bad) {
        this.#sq.push({ wr: { ...wr, opcode: wrOpcode(wr.opcode) === undefined ? WrOpcode.SEND : wr.opcode, sendFlags: IBV_SEND_SIGNALED }, seq, localError: WcStatus.LOC_QP_OP_ERR });
      } else {
        this.#sq.push({ wr, seq });
      }
    }
    this.#progress();
  }

  get attr(): Readonly<QpAttr> {
    return this.#attr;
  }

  /** ibv_query_qp(). */
  query(): QpAttr {
    return { ...this.#attr, qpState: this.#state, curQpState: this.#state };
  }

  /**
   * ibv_modify_qp(): EINVAL, with nothing changed, for a transition or mask
   * ib_modify_qp_is_ok() refuses or a value out of range. To RESET drops
   * every queued WR and the QP's unpolled completions (mlx5_cq_clean()); to
   * ERR flushes.
   */
  modify(attr: Partial<QpAttr>, mask: number): void {
    const next = (mask & IBV_QP_STATE) !== 0 ? attr.qpState : this.#state;
    if (next === undefined || !Object.values(QpState).includes(next)) {
      throw errno('EINVAL', `qp_state ${String(next)} is not a QP state`);
    }
    const rejection = modifyQpRejection(this.#state, next, mask);
    if (rejection !== undefined) {
      throw errno('EINVAL', `QP ${this.qpNum}: ${rejection}`);
    }
    checkAttrValues(attr, mask, this.#state);
    applyAttr(this.#attr, attr, mask);
    this.#ackTimeoutMs = ackTimeoutMs(this.#attr.timeout);
    const from = this.#state;
    if (next === QpState.RESET) {
      this.#reset();
      return;
    }
    if (next === QpState.ERR) {
      this.toError();
      return;
    }
    this.#state = next;
    if (next === QpState.RTR && from === QpState.INIT) {
      this.#ePsn = this.#attr.rqPsn & PSN_MASK;
    }
    if (next === QpState.RTS && from === QpState.RTR) {
      this.#nextPsn = this.#attr.sqPsn & PSN_MASK;
    }
    if (next === QpState.SQD && from !== QpState.SQD) {
      this.#sqdNotify = (mask & IBV_QP_EN_SQD_ASYNC_NOTIFY) !== 0 && attr.enSqdAsyncNotify === true;
      this.#checkDrained();
    }
    if (next === QpState.RTS && from !== QpState.RTS) {
      this.#progress();
    }
  }

  /**
   * ibv_post_send(): EINVAL before RTS (mlx5 refuses RESET, INIT and RTR),
   * EINVAL for a bad opcode or too many SGEs, ENOMEM for a full send queue;
   * the WRs before the bad one stay posted. In SQD WRs queue; in ERR each
   * is flushed at once.
   */
  postSend(wrs: readonly SendWr[]): PostResult {
    if (this.#state === QpState.RESET || this.#state === QpState.INIT || this.#state === QpState.RTR) {
      return { posted: 0, error: errno('EINVAL', `QP ${this.qpNum} cannot post sends before RTS`) };
    }
    let error: ErrnoError | undefined;
    let posted = 0;
    for (const wr of wrs) {
      error = this.#checkSend(wr);
      if (error !== undefined) {
        break;
      }
      const seq = this.#sqPosted++;
      posted++;
      if (this.#state === QpState.ERR) {
        this.#completeSend(wr, seq, WcStatus.WR_FLUSH_ERR);
      } else {
        this.#sq.push({ wr, seq });
      }
    }
    this.#progress();
    return error === undefined ? { posted } : { posted, error };
  }

  /**
   * ibv_post_recv(): EINVAL in RESET, EINVAL for too many SGEs, ENOMEM for a
   * full receive queue. In ERR the WR is flushed at once. A responder that
   * answered RNR tells the requester it may retry (`rnrCleared`).
   */
  postRecv(wrs: readonly RecvWr[], rnrCleared: (qp: QueuePair) => void): PostResult {
    if (this.#state === QpState.RESET) {
      return { posted: 0, error: errno('EINVAL', `QP ${this.qpNum} cannot post receives in RESET`) };
    }
    let error: ErrnoError | undefined;
    let posted = 0;
    for (const wr of wrs) {
      if (wr.sgList.length > this.cap.maxRecvSge) {
        error = errno('EINVAL', `${wr.sgList.length} SGEs exceed max_recv_sge ${this.cap.maxRecvSge}`);
        break;
      }
      if (!this.#userQueues && this.#rqPosted - this.#rqRetired >= this.cap.maxRecvWr) {
        error = errno('ENOMEM', `the receive queue of QP ${this.qpNum} is full (${this.cap.maxRecvWr})`);
        break;
      }
      const seq = this.#rqPosted++;
      posted++;
      if (this.#state === QpState.ERR) {
        this.#completeRecv(wr, seq, WcStatus.WR_FLUSH_ERR, WcOpcode.RECV, 0, false, 0);
      } else {
        this.#rq.push(wr);
      }
    }
    if (posted > 0 && this.rnrNakSent && this.#state !== QpState.ERR) {
      this.rnrNakSent = false;
      rnrCleared(this);
    }
    return error === undefined ? { posted } : { posted, error };
  }

  /** The receive the next incoming SEND or WRITE_WITH_IMM consumes. */
  peekRecv(): RecvWr | undefined {
    return this.#rq[this.#rqHead];
  }

  /** Consume the head receive with a completion. */
  completeHeadRecv(status: WcStatus, opcode: WcOpcode, byteLen: number, withImm: boolean, immData: number): void {
    const wr = this.#rq[this.#rqHead]!;
    const seq = this.#rqPosted - (this.#rq.length - this.#rqHead);
    this.#rq[this.#rqHead++] = undefined;
    if (this.#rqHead === this.#rq.length) {
      this.#rq = [];
      this.#rqHead = 0;
    }
    this.#completeRecv(wr, seq, status, opcode, byteLen, withImm, immData);
  }

  /** The responder says it can take what it answered RNR: retry now rather than at the RNR timer. */
  resumeAfterRnr(): void {
    if (this.#waiting === 'rnr') {
      this.#resume();
    }
  }

  /**
   * The responder's PSN check (IBA 9.7.5.1): 'execute' the expected PSN,
   * 'duplicate' for one already executed (within half the PSN space
   * behind), 'drop' for one ahead of it.
   */
  checkPsn(psn: number): 'execute' | 'duplicate' | 'drop' {
    if (psn === this.#ePsn) {
      return 'execute';
    }
    const behind = (this.#ePsn - psn) & PSN_MASK;
    return behind > 0 && behind < 0x800000 ? 'duplicate' : 'drop';
  }

  /** The responder executed (or NAKed) the expected PSN. */
  advancePsn(): void {
    this.#ePsn = (this.#ePsn + 1) & PSN_MASK;
  }

  /** Keep an atomic's original for a duplicate of its PSN (the responder's atomic resource, IBA 9.7.5.1.3). */
  saveAtomic(psn: number, original: bigint): void {
    this.#atomicOriginals.set(psn, original);
    if (this.#atomicOriginals.size > 2 * MAX_SAVED_ATOMICS) {
      for (const key of [...this.#atomicOriginals.keys()].slice(0, MAX_SAVED_ATOMICS)) {
        this.#atomicOriginals.delete(key);
      }
    }
  }

  savedAtomic(psn: number): bigint | undefined {
    return this.#atomicOriginals.get(psn);
  }

  /**
   * The QP enters ERR: the send queue's WRs, then the receive queue's,
   * complete with IBV_WC_WR_FLUSH_ERR in post order.
   */
  toError(): void {
    if (this.#state === QpState.ERR) {
      return;
    }
    this.#state = QpState.ERR;
    this.#sqdNotify = false;
    const inflight = this.#dropSendQueues();
    const sq = this.#sq;
    const sqHead = this.#sqHead;
    const rq = this.#rq;
    const rqHead = this.#rqHead;
    this.#sq = [];
    this.#sqHead = 0;
    this.#rq = [];
    this.#rqHead = 0;
    for (const entry of inflight) {
      this.#completeSend(entry.wr, entry.seq, WcStatus.WR_FLUSH_ERR);
    }
    for (let i = sqHead; i < sq.length; i++) {
      this.#completeSend(sq[i]!.wr, sq[i]!.seq, WcStatus.WR_FLUSH_ERR);
    }
    let seq = this.#rqPosted - (rq.length - rqHead);
    for (let i = rqHead; i < rq.length; i++) {
      this.#completeRecv(rq[i]!, seq++, WcStatus.WR_FLUSH_ERR, WcOpcode.RECV, 0, false, 0);
    }
  }

  /** A responder-side error with no WQE to report it against: ERR and an affiliated async event. */
  fail(event: AsyncEventType): void {
    this.toError();
    this.emit(event);
  }

  /** An async event affiliated with this QP. */
  emit(event: AsyncEventType): void {
    this.events.emit({ type: event, qpNum: this.qpNum });
  }

  /** ibv_destroy_qp(): its completions leave the CQs, its WRs vanish. */
  destroy(): void {
    this.#reset();
  }

  retire(seq: number, recv: boolean): void {
    if (recv) {
      this.#rqRetired = Math.max(this.#rqRetired, seq + 1);
    } else {
      this.#sqRetired = Math.max(this.#sqRetired, seq + 1);
    }
  }

  #checkSend(wr: SendWr): ErrnoError | undefined {
    if (wrOpcode(wr.opcode) === undefined) {
      return errno('EINVAL', `opcode ${String(wr.opcode)} is not an RC send opcode`);
    }
    if (wr.sgList.length > this.cap.maxSendSge) {
      return errno('EINVAL', `${wr.sgList.length} SGEs exceed max_send_sge ${this.cap.maxSendSge}`);
    }
    if (!this.#userQueues && this.#sqPosted - this.#sqRetired >= this.cap.maxSendWr) {
      return errno('ENOMEM', `the send queue of QP ${this.qpNum} is full (${this.cap.maxSendWr})`);
    }
    return undefined;
  }

  /**
   * Complete answered WRs in PSN order and put posted ones on the wire while
   * in RTS; re-entrant calls (answers that arrive synchronously, listeners
   * that post) fold into the running loop.
   */
  #progress(): void {
    if (this.#progressing) {
      this.#again = true;
      return;
    }
    this.#progressing = true;
    do {
      this.#again = false;
      this.#retire();
      while (this.#canStart()) {
        if (!this.#start()) {
          break;
        }
        this.#retire();
      }
    } while (this.#again);
    this.#progressing = false;
    this.#checkDrained();
  }

  #canStart(): boolean {
    if (this.#state !== QpState.RTS || this.#waiting !== undefined || this.#sqHead >= this.#sq.length) {
      return false;
    }
    const { wr } = this.#sq[this.#sqHead]!;
    if (this.#sq[this.#sqHead]!.localError === undefined && isReadLike(wr.opcode) && this.#readsInFlight >= Math.max(1, this.#attr.maxRdAtomic)) {
      return false;
    }
    return (wr.sendFlags & IBV_SEND_FENCE) === 0 || this.#readsInFlight === 0;
  }

  /** Put the head of the send queue on the wire; false when it waits for a page fault. */
  #start(): boolean {
    const { wr, seq, localError } = this.#sq[this.#sqHead]!;
    const local: Uint8Array[] = [];
    const prepared = localError ?? this.engine.prepare(this, wr, local);
    if (typeof prepared !== 'number') {
      this.#waiting = 'fault';
      void prepared.then(() => this.#resume());
      return false;
    }
    this.#sq[this.#sqHead++] = undefined as unknown as Queued;
    if (this.#sqHead === this.#sq.length) {
      this.#sq = [];
      this.#sqHead = 0;
    }
    const entry: InFlight = { wr, seq, localError, psn: this.#nextPsn, status: PENDING, attempt: 0, retries: 0, rnrNaks: this.#rnrCounts.get(seq) ?? 0 };
    this.#nextPsn = (this.#nextPsn + 1) & PSN_MASK;
    this.#inflight.push(entry);
    if (localError === undefined && isReadLike(wr.opcode)) {
      this.#readsInFlight++;
    }
    if (prepared !== WcStatus.SUCCESS) {
      entry.status = prepared;
    } else {
      this.#transmit(entry, local);
    }
    return true;
  }

  #transmit(entry: InFlight, local: readonly Uint8Array[]): void {
    const attempt = ++entry.attempt;
    this.engine.transmit(this, entry.wr, entry.psn, local, this.#ackTimeoutMs, (response) => this.#answer(entry, attempt, response));
  }

  /** An answer (or the transport timer running out) for one transmission of `entry`. */
  #answer(entry: InFlight, attempt: number, response: WireResponse | undefined): void {
    if (entry.status !== PENDING || attempt !== entry.attempt || this.#state === QpState.RESET) {
      return;
    }
    const verdict = judgeAnswer(response, entry.retries, this.#attr.retryCnt);
    switch (verdict.action) {
      case 'retransmit':
        entry.retries++;
        this.retries++;
        this.#retransmit(entry);
        return;
      case 'rnr':
        this.#rnrNak(entry, response!);
        return;
      case 'refetch':
        this.refetches++;
        this.#rewind(entry);
        this.#progress();
        return;
      case 'land':
        entry.status = this.engine.land(this, entry.wr, response!);
        break;
      case 'complete':
        entry.status = verdict.status;
        break;
    }
    this.#progress();
  }

  /** Send `entry` again with its PSN, its local SGEs resolved again. */
  #retransmit(entry: InFlight): void {
    const local: Uint8Array[] = [];
    const prepared = this.engine.prepare(this, entry.wr, local);
    if (prepared === WcStatus.SUCCESS) {
      this.#transmit(entry, local);
      return;
    }
    entry.status = typeof prepared === 'number' ? prepared : WcStatus.LOC_PROT_ERR;
    this.#progress();
  }

  /**
   * RNR NAK for `entry`: the responder dropped every later PSN, so the send
   * queue rewinds to it, and the QP waits for the RNR timer (or the
   * responder's hint) before sending it again.
   */
  #rnrNak(entry: InFlight, response: WireResponse): void {
    const infinite = this.#attr.rnrRetry === RNR_RETRY_INFINITE;
    if (!infinite && entry.rnrNaks >= this.#attr.rnrRetry) {
      entry.status = WcStatus.RNR_RETRY_EXC_ERR;
      this.#progress();
      return;
    }
    entry.rnrNaks++;
    this.rnrRetries++;
    this.#rewind(entry);
    this.#rnrCounts.set(entry.seq, entry.rnrNaks);
    this.#waiting = 'rnr';
    if (!infinite) {
      this.#rnrTimer = setTimeout(() => this.resumeAfterRnr(), rnrTimerMs(response.rnrTimer ?? this.#attr.minRnrTimer));
    }
  }

  /** Back to `entry`: it and every later PSN go again, from the send queue, as each was posted. */
  #rewind(entry: InFlight): void {
    const index = this.#inflight.indexOf(entry, this.#inflightHead);
    const rewound = this.#inflight.splice(index);
    for (const again of rewound) {
      again.attempt++;
      if (again.localError === undefined && isReadLike(again.wr.opcode)) {
        this.#readsInFlight--;
      }
    }
    this.#nextPsn = entry.psn;
    this.#sq = [...rewound.map(({ wr, seq, localError }) => ({ wr, seq, localError })), ...this.#sq.slice(this.#sqHead)];
    this.#sqHead = 0;
  }

  #resume(): void {
    clearTimeout(this.#rnrTimer);
    this.#rnrTimer = undefined;
    this.#waiting = undefined;
    this.#progress();
  }

  /** Complete the answered WRs at the head, in PSN order; the first error sends the QP to ERR. */
  #retire(): void {
    while (this.#inflightHead < this.#inflight.length) {
      const entry = this.#inflight[this.#inflightHead]!;
      if (entry.status === PENDING) {
        return;
      }
      this.#inflight[this.#inflightHead++] = undefined as unknown as InFlight;
      if (this.#inflightHead === this.#inflight.length) {
        this.#inflight = [];
        this.#inflightHead = 0;
      }
      if (entry.localError === undefined && isReadLike(entry.wr.opcode)) {
        this.#readsInFlight--;
      }
      this.#rnrCounts.delete(entry.seq);
      this.#completeSend(entry.wr, entry.seq, entry.status as WcStatus);
      if (entry.status !== WcStatus.SUCCESS) {
        this.toError();
        return;
      }
    }
  }

  /** Take every WR off the wire (ERR, RESET): answers still to come are ignored. */
  #dropSendQueues(): InFlight[] {
    clearTimeout(this.#rnrTimer);
    this.#rnrTimer = undefined;
    this.#waiting = undefined;
    const inflight = this.#inflight.slice(this.#inflightHead);
    for (const entry of inflight) {
      entry.attempt++;
    }
    this.#inflight = [];
    this.#inflightHead = 0;
    this.#readsInFlight = 0;
    this.#rnrCounts.clear();
    return inflight;
  }

  /** IBV_EVENT_SQ_DRAINED once the SQD QP has nothing in flight. */
  #checkDrained(): void {
    if (this.#state === QpState.SQD && this.#sqdNotify && this.#inflightHead === this.#inflight.length) {
      this.#sqdNotify = false;
      this.events.emit({ type: AsyncEventType.SQ_DRAINED, qpNum: this.qpNum });
    }
  }

  #completeSend(wr: SendWr, seq: number, status: WcStatus): void {
    const wc = sendCompletion(wr, status, this.qpNum, this.sqSigAll);
    if (wc !== undefined) this.sendCq.push(wc, this, seq, false);
  }

  #completeRecv(wr: RecvWr, seq: number, status: WcStatus, opcode: WcOpcode, byteLen: number, withImm: boolean, immData: number): void {
    this.recvCq.push(recvCompletion(wr, status, opcode, byteLen, withImm, immData, this.qpNum, this.#attr.destQpNum), this, seq, true);
  }

  #reset(): void {
    this.#state = QpState.RESET;
    this.#attr = resetAttr();
    this.#ackTimeoutMs = ackTimeoutMs(this.#attr.timeout);
    this.#dropSendQueues();
    this.#sq = [];
    this.#sqHead = 0;
    this.#sqPosted = 0;
    this.#sqRetired = 0;
    this.#rq = [];
    this.#rqHead = 0;
    this.#rqPosted = 0;
    this.#rqRetired = 0;
    this.#sqdNotify = false;
    this.#ePsn = 0;
    this.#nextPsn = 0;
    this.#atomicOriginals.clear();
    this.rnrNakSent = false;
    this.commEstablished = false;
    this.sendCq.clean(this);
    this.recvCq.clean(this);
  }
}
