import { userQueues } from '@p2p/verbs';
import type { BadWqe, QueuePair } from '../qp/queue-pair';
import type { PostResult, RecvWr, SendWr } from '../qp/work-request';
import { AsyncEventType, QpState } from '../verbs/enums';

const { DoorbellWord, QP_RQ_DBREC, QP_SQ_DBREC, decodeRecvWqe, decodeSendWqe, qpRingLayout } = userQueues;

/**
 * The NIC's end of a QP whose work queues are in its process's memory: it
 * reads the doorbell records the process stores and fetches the WQEs up to
 * them, as an HCA fetches WQEs after a doorbell. It fetches no more than
 * the queue holds beyond what it has not completed, so a process that
 * overruns its own ring cannot make the NIC queue without bound. A
 * doorbell record more than a queue ahead of what was fetched is no
 * doorbell the library rang: the QP goes to ERR (IBV_EVENT_QP_FATAL).
 */
export class UserQp {
  readonly #qp: QueuePair;
  readonly #view: DataView;
  readonly #sqDoorbell: userQueues.DoorbellWord;
  readonly #rqDoorbell: userQueues.DoorbellWord;
  readonly #layout: userQueues.QpRingLayout;
  readonly #postRecv: (wrs: readonly RecvWr[]) => PostResult;
  #sqFetched = 0;
  #rqFetched = 0;
  #broken = false;

  /** `postRecv`: the NIC's ibv_post_recv() on the QP (it also tells a requester waiting on RNR). */
  constructor(qp: QueuePair, memory: Uint8Array, postRecv: (wrs: readonly RecvWr[]) => PostResult) {
    this.#qp = qp;
    this.#postRecv = postRecv;
    this.#layout = qpRingLayout(qp.cap);
    this.#view = new DataView(memory.buffer, memory.byteOffset, this.#layout.bytes);
    this.#sqDoorbell = new DoorbellWord(memory, QP_SQ_DBREC);
    this.#rqDoorbell = new DoorbellWord(memory, QP_RQ_DBREC);
  }

  get qpNum(): number {
    return this.#qp.qpNum;
  }

  /** Fetches what the doorbell records announce; whether there was any. */
  scan(): boolean {
    const state = this.#qp.state;
    if (state === QpState.RESET) {
      // The library zeroes its records with the QP's reset (mlx5_init_qp_indices()).
      this.#sqFetched = 0;
      this.#rqFetched = 0;
      this.#broken = false;
      return false;
    }
    if (this.#broken) return false;
    const recv = this.#fetchRecv();
    const send = state === QpState.RTS || state === QpState.SQD || state === QpState.ERR ? this.#fetchSend() : false;
    return recv || send;
  }

  #fetchSend(): boolean {
    const { sqAt, sqEntries, sqStride } = this.#layout;
    const announced = (this.#sqDoorbell.load() - this.#sqFetched) >>> 0;
    if (announced === 0) return false;
    if (announced > sqEntries) return this.#garbled();
    const take = Math.min(announced, sqEntries - this.#qp.sendOutstanding);
    if (take <= 0) return false;
    const wqes = new Array<SendWr | BadWqe>(take);
    for (let i = 0; i < take; i++) {
      const at = sqAt + ((this.#sqFetched + i) % sqEntries) * sqStride;
      const wr = decodeSendWqe(this.#view, at, sqStride);
      // A decoded WQE is a SendWr but for its opcode's type: the QP refuses an opcode it does not know in its turn.
      wqes[i] = typeof wr === 'string' ? { wrId: this.#view.getBigUint64(at, true), reason: wr } : (wr as SendWr);
    }
    this.#sqFetched = (this.#sqFetched + take) >>> 0;
    this.#qp.postFromRing(wqes);
    return true;
  }

  #fetchRecv(): boolean {
    const { rqAt, rqEntries, rqStride } = this.#layout;
    const announced = (this.#rqDoorbell.load() - this.#rqFetched) >>> 0;
    if (announced === 0) return false;
    if (announced > rqEntries) return this.#garbled();
    const take = Math.min(announced, rqEntries - this.#qp.recvOutstanding);
    if (take <= 0) return false;
    const wrs = new Array<RecvWr>(take);
    for (let i = 0; i < take; i++) {
      const wr = decodeRecvWqe(this.#view, rqAt + ((this.#rqFetched + i) % rqEntries) * rqStride, rqStride);
      if (typeof wr === 'string') return this.#garbled();
      wrs[i] = wr;
    }
    this.#rqFetched = (this.#rqFetched + take) >>> 0;
    // A receive the library should have refused (too many SGEs): the HCA cannot run the queue.
    if (this.#postRecv(wrs).error !== undefined) return this.#garbled();
    return true;
  }

  /** A queue the NIC cannot read on: the QP goes to ERR with IBV_EVENT_QP_FATAL, and this end stops fetching until a reset. */
  #garbled(): boolean {
    this.#broken = true;
    this.#qp.fail(AsyncEventType.QP_FATAL);
    return true;
  }
}
