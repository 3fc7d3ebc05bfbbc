import { errno, type ErrnoError } from '@p2p/errno';
import type { CompletionQueue, WorkQueueOwner } from '../cq/completion-queue';
import type { AsyncEvents } from '../events/async-events';
import type { ProtectionDomain } from '../mr/protection-domain';
import { IBV_SEND_SIGNALED } from '../verbs/send-flags';
import { AsyncEventType, QpState, WcOpcode, WcStatus, WrOpcode } from '../verbs/enums';
import { IBV_QP_EN_SQD_ASYNC_NOTIFY, IBV_QP_STATE } from '../verbs/qp-attr-mask';
import { applyAttr, checkAttrValues, resetAttr, type QpAttr } from './qp-attr';
import { modifyQpRejection } from './state-table';
import type { PostResult, RecvWr, SendWr } from './work-request';

/** struct ibv_qp_cap. */
export interface QpCap {
  readonly maxSendWr: number;
  readonly maxRecvWr: number;
  readonly maxSendSge: number;
  readonly maxRecvSge: number;
}

/** Runs one send WR on the wire: a WcStatus, or STALLED while an RNR NAK waits for a receive (rnr_retry 7). */
export type SendExecutor = (qp: QueuePair, wr: SendWr) => number;

export const STALLED = -1;

const SEND_OPCODE: Readonly<Record<WrOpcode, WcOpcode>> = {
  [WrOpcode.RDMA_WRITE]: WcOpcode.RDMA_WRITE,
  [WrOpcode.RDMA_WRITE_WITH_IMM]: WcOpcode.RDMA_WRITE,
  [WrOpcode.SEND]: WcOpcode.SEND,
  [WrOpcode.SEND_WITH_IMM]: WcOpcode.SEND,
  [WrOpcode.RDMA_READ]: WcOpcode.RDMA_READ,
  [WrOpcode.ATOMIC_CMP_AND_SWP]: WcOpcode.COMP_SWAP,
  [WrOpcode.ATOMIC_FETCH_AND_ADD]: WcOpcode.FETCH_ADD,
};

/**
 * An RC ibv_qp: its state machine (ib_modify_qp_is_ok()), its send and
 * receive queues and the completions it writes. Send WRs run in post
 * order, synchronously when the QP is in RTS; a WR answered RNR with
 * rnr_retry 7 stays at the head of the send queue until the responder posts
 * a receive, and the WRs behind it wait. Queue slots free when the
 * completion of an entry (or of a later one) is polled, as the provider's
 * wq tail moves in mlx5_poll_one().
 */
export class QueuePair implements WorkQueueOwner {
  #state: QpState = QpState.RESET;
  #attr: QpAttr = resetAttr();
  #sq: (SendWr | undefined)[] = [];
  #sqHead = 0;
  #sqPosted = 0;
  #sqRetired = 0;
  #rq: (RecvWr | undefined)[] = [];
  #rqHead = 0;
  #rqPosted = 0;
  #rqRetired = 0;
  #stalled = false;
  #sqdNotify = false;
  #progressing = false;
  #again = false;
  /** Bumped whenever the queues are flushed or reset, so an in-flight WR knows it was completed under it. */
  #generation = 0;

  /** The responder answered RNR and owes the requester a retry when a receive is posted. */
  rnrNakSent = false;
  /** IBV_EVENT_COMM_EST was raised for this RTR period. */
  commEstablished = false;
  /** Transport retries (no answer) and RNR retries made, for tests and metrics. */
  retries = 0;
  rnrRetries = 0;

  constructor(
    readonly qpNum: number,
    readonly pd: ProtectionDomain,
    readonly sendCq: CompletionQueue,
    readonly recvCq: CompletionQueue,
    readonly cap: QpCap,
    readonly sqSigAll: boolean,
    private readonly events: AsyncEvents,
    private readonly execute: SendExecutor,
  ) {}

  get state(): QpState {
    return this.#state;
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
        this.#sq.push(wr);
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
      if (this.#rqPosted - this.#rqRetired >= this.cap.maxRecvWr) {
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

  /** The requester got its retry after RNR: run the send queue again. */
  resumeAfterRnr(): void {
    if (this.#stalled) {
      this.#stalled = false;
      this.#progress();
    }
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
    this.#stalled = false;
    this.#sqdNotify = false;
    this.#generation++;
    const sq = this.#sq;
    const sqHead = this.#sqHead;
    const rq = this.#rq;
    const rqHead = this.#rqHead;
    this.#sq = [];
    this.#sqHead = 0;
    this.#rq = [];
    this.#rqHead = 0;
    let seq = this.#sqPosted - (sq.length - sqHead);
    for (let i = sqHead; i < sq.length; i++) {
      this.#completeSend(sq[i]!, seq++, WcStatus.WR_FLUSH_ERR);
    }
    seq = this.#rqPosted - (rq.length - rqHead);
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
    if (SEND_OPCODE[wr.opcode] === undefined) {
      return errno('EINVAL', `opcode ${String(wr.opcode)} is not an RC send opcode`);
    }
    if (wr.sgList.length > this.cap.maxSendSge) {
      return errno('EINVAL', `${wr.sgList.length} SGEs exceed max_send_sge ${this.cap.maxSendSge}`);
    }
    if (this.#sqPosted - this.#sqRetired >= this.cap.maxSendWr) {
      return errno('ENOMEM', `the send queue of QP ${this.qpNum} is full (${this.cap.maxSendWr})`);
    }
    return undefined;
  }

  /** Run queued WRs while in RTS; re-entrant calls (from listeners) fold into the running loop. */
  #progress(): void {
    if (this.#progressing) {
      this.#again = true;
      return;
    }
    this.#progressing = true;
    do {
      this.#again = false;
      while (this.#state === QpState.RTS && !this.#stalled && this.#sqHead < this.#sq.length) {
        const wr = this.#sq[this.#sqHead]!;
        const generation = this.#generation;
        const status = this.execute(this, wr);
        if (generation !== this.#generation) {
          break;
        }
        if (status === STALLED) {
          this.#stalled = true;
          break;
        }
        const seq = this.#sqPosted - (this.#sq.length - this.#sqHead);
        this.#sq[this.#sqHead++] = undefined;
        if (this.#sqHead === this.#sq.length) {
          this.#sq = [];
          this.#sqHead = 0;
        }
        this.#completeSend(wr, seq, status as WcStatus);
        if (status !== WcStatus.SUCCESS) {
          this.toError();
        }
      }
    } while (this.#again);
    this.#progressing = false;
    this.#checkDrained();
  }

  /** IBV_EVENT_SQ_DRAINED once the SQD QP has nothing in flight. */
  #checkDrained(): void {
    if (this.#state === QpState.SQD && this.#sqdNotify && !this.#stalled) {
      this.#sqdNotify = false;
      this.events.emit({ type: AsyncEventType.SQ_DRAINED, qpNum: this.qpNum });
    }
  }

  /** A send CQE: always for errors, for success only when signaled (IBV_SEND_SIGNALED or sq_sig_all). */
  #completeSend(wr: SendWr, seq: number, status: WcStatus): void {
    if (status === WcStatus.SUCCESS && !this.sqSigAll && (wr.sendFlags & IBV_SEND_SIGNALED) === 0) {
      return;
    }
    this.sendCq.push(
      {
        wrId: wr.wrId,
        status,
        opcode: SEND_OPCODE[wr.opcode],
        byteLen: status === WcStatus.SUCCESS ? sendByteLen(wr) : 0,
        immData: 0,
        withImm: false,
        qpNum: this.qpNum,
        srcQp: 0,
        vendorErr: 0,
      },
      this,
      seq,
      false,
    );
  }

  #completeRecv(wr: RecvWr, seq: number, status: WcStatus, opcode: WcOpcode, byteLen: number, withImm: boolean, immData: number): void {
    this.recvCq.push(
      {
        wrId: wr.wrId,
        status,
        opcode,
        byteLen: status === WcStatus.SUCCESS ? byteLen : 0,
        immData,
        withImm,
        qpNum: this.qpNum,
        srcQp: status === WcStatus.SUCCESS ? this.#attr.destQpNum : 0,
        vendorErr: 0,
      },
      this,
      seq,
      true,
    );
  }

  #reset(): void {
    this.#state = QpState.RESET;
    this.#attr = resetAttr();
    this.#generation++;
    this.#sq = [];
    this.#sqHead = 0;
    this.#sqPosted = 0;
    this.#sqRetired = 0;
    this.#rq = [];
    this.#rqHead = 0;
    this.#rqPosted = 0;
    this.#rqRetired = 0;
    this.#stalled = false;
    this.#sqdNotify = false;
    this.rnrNakSent = false;
    this.commEstablished = false;
    this.sendCq.clean(this);
    this.recvCq.clean(this);
  }
}

/** byte_len of a successful send completion: what RDMA_READ brought, 8 for atomics, else 0. */
function sendByteLen(wr: SendWr): number {
  if (wr.opcode === WrOpcode.RDMA_READ) {
    let sum = 0;
    for (const sge of wr.sgList) {
      sum += sge.length;
    }
    return sum;
  }
  return wr.opcode === WrOpcode.ATOMIC_CMP_AND_SWP || wr.opcode === WrOpcode.ATOMIC_FETCH_AND_ADD ? 8 : 0;
}
