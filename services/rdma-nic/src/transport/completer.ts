import type { WorkCompletion } from '../cq/work-completion';
import type { RecvWr, SendWr } from '../qp/work-request';
import { IBV_SEND_SIGNALED } from '../verbs/send-flags';
import { type WcOpcode, WcStatus } from '../verbs/enums';
import { REFETCH, RNR_NAK, type WireResponse } from './fabric';
import { WR_OPCODES, wireOpOf } from './opcodes';

/**
 * The completer (rxe_comp.c): what an answer to an in-flight send WR means,
 * and the completions the QP writes. The QP (qp/queue-pair.ts) keeps the
 * queues and acts on the verdicts; the requester (requester.ts) builds the
 * packets; the responder (responder.ts) answers them.
 */

/** What to do with one answer (or the local ACK timer running out). */
export type Verdict =
  | { readonly action: 'retransmit' }
  | { readonly action: 'rnr' }
  | { readonly action: 'refetch' }
  | { readonly action: 'land' }
  | { readonly action: 'complete'; readonly status: WcStatus };

const RETRANSMIT: Verdict = { action: 'retransmit' };
const RNR: Verdict = { action: 'rnr' };
const REFETCH_LOCAL: Verdict = { action: 'refetch' };
const LAND: Verdict = { action: 'land' };
const RETRY_EXCEEDED: Verdict = { action: 'complete', status: WcStatus.RETRY_EXC_ERR };

/**
 * No answer within the timer: retransmit, up to retry_cnt times, then
 * RETRY_EXC_ERR. An RNR NAK: rewind and wait (the QP counts rnr_retry).
 * REFETCH: rewind and fetch the local SGEs again, at once and uncounted. An
 * ACK: land the answer's data. A NAK: complete with its status.
 */
export function judgeAnswer(response: WireResponse | undefined, retries: number, retryCnt: number): Verdict {
  if (response === undefined) return retries >= retryCnt ? RETRY_EXCEEDED : RETRANSMIT;
  if (response.status === RNR_NAK) return RNR;
  if (response.status === REFETCH) return REFETCH_LOCAL;
  return response.status === WcStatus.SUCCESS ? LAND : { action: 'complete', status: response.status };
}

/** A send CQE: always for errors, for success only when signaled (IBV_SEND_SIGNALED or sq_sig_all); undefined when none. */
export function sendCompletion(wr: SendWr, status: WcStatus, qpNum: number, sqSigAll: boolean): WorkCompletion | undefined {
  if (status === WcStatus.SUCCESS && !sqSigAll && (wr.sendFlags & IBV_SEND_SIGNALED) === 0) return undefined;
  return {
    wrId: wr.wrId,
    status,
    opcode: WR_OPCODES[wr.opcode].wcOpcode,
    byteLen: status === WcStatus.SUCCESS ? sendByteLen(wr) : 0,
    immData: 0,
    withImm: false,
    qpNum,
    srcQp: 0,
    vendorErr: 0,
  };
}

/** A receive CQE: byte_len and the source QP only on success. */
export function recvCompletion(wr: RecvWr, status: WcStatus, opcode: WcOpcode, byteLen: number, withImm: boolean, immData: number, qpNum: number, srcQp: number): WorkCompletion {
  const ok = status === WcStatus.SUCCESS;
  return { wrId: wr.wrId, status, opcode, byteLen: ok ? byteLen : 0, immData, withImm, qpNum, srcQp: ok ? srcQp : 0, vendorErr: 0 };
}

/** byte_len of a successful send completion: what RDMA_READ brought, 8 for atomics, else 0. */
function sendByteLen(wr: SendWr): number {
  const { readLike, atomic } = wireOpOf(wr.opcode);
  if (atomic) return 8;
  if (!readLike) return 0;
  let sum = 0;
  for (const sge of wr.sgList) sum += sge.length;
  return sum;
}
