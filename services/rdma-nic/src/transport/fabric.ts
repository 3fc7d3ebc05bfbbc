import type { LocalGrant } from '../memory/memory';
import type { WcStatus } from '../verbs/enums';

/** The RC request packets the model carries (one message each; no segmentation by MTU). */
export const WireOp = {
  SEND: 0,
  RDMA_WRITE: 1,
  RDMA_READ: 2,
  CMP_SWAP: 3,
  FETCH_ADD: 4,
} as const;
export type WireOp = (typeof WireOp)[keyof typeof WireOp];

/** PSNs are 24 bits (IBA 9.7.1). */
export const PSN_MASK = 0xffffff;

/**
 * A request from requester to responder. `payload` holds views of the
 * requester's gathered SGEs (SEND and RDMA_WRITE): the fabric reads them
 * during request() only, so each byte is copied once on the requester's
 * side (into the wire) and once on the responder's (out of it).
 */
export interface WireRequest {
  readonly op: WireOp;
  readonly srcGid: string;
  readonly srcQpn: number;
  /** The message's PSN: the responder executes each PSN once, in order (IBA 9.7.5.1). */
  readonly psn: number;
  readonly remoteAddr: number;
  readonly rkey: number;
  readonly length: number;
  readonly payload: readonly Uint8Array[];
  readonly withImm: boolean;
  readonly immData: number;
  readonly compareAdd: bigint;
  readonly swap: bigint;
  /**
   * Where the requester's memory of this message lies (SEND and WRITE: the
   * payload; READ: where the answer lands) when it is one SGE of a dma-buf a
   * peer NIC may be given: a fabric whose peer maps that dma-buf moves the
   * bytes once, between the two MRs, rather than through a ring.
   */
  readonly local?: LocalGrant;
}

/** The responder's receive-not-ready NAK (IB spec 9.7.5.2.8). */
export const RNR_NAK = -1;

/**
 * Not run: the responder could not reach the requester's memory of the
 * message (the peer's attachment to it heard a move_notify). The requester
 * fetches its SGEs again, as after a page fault of its own, and sends the
 * message again under the same PSN; no retry counter is spent.
 */
export const REFETCH = -3;

/**
 * The responder's answer: SUCCESS (ACK) with `data` views of the responder
 * memory for RDMA_READ (valid only while the answer is being handled), or
 * `landed` when those bytes were put in the requester's memory already,
 * `original` for atomics; RNR_NAK with the responder's min_rnr_timer code;
 * or the NAK's completion status for the requester (REM_ACCESS_ERR,
 * REM_INV_REQ_ERR, REM_OP_ERR).
 */
export interface WireResponse {
  readonly status: WcStatus | typeof RNR_NAK | typeof REFETCH;
  readonly data?: readonly Uint8Array[];
  /** READ data the responder already put in the requester's memory (WireRequest.local): its byte count. */
  readonly landed?: number;
  readonly original?: bigint;
  /** With RNR_NAK: the responder's min_rnr_timer (IBA table 45 code, 0..31). */
  readonly rnrTimer?: number;
}

/** Called exactly once per request: the answer, or undefined when the transport timer ran out. */
export type WireReply = (response: WireResponse | undefined) => void;

/**
 * The wire between NICs, addressed by (GID, QPN). `request` answers through
 * `reply`, synchronously or later: undefined means nothing answered within
 * `timeoutMs` (0: wait forever), for no such NIC, no such QP, a QP not
 * accepting, a dead, frozen or partitioned peer alike.
 */
export interface Fabric {
  request(dgid: string, dqpn: number, request: WireRequest, timeoutMs: number, reply: WireReply): void;
  /** The responder can take a request it answered RNR (a receive was posted, a page fault finished): the requester may retry now. */
  rnrCleared(dgid: string, dqpn: number): void;
}

/** What a NIC answers on the fabric. */
export interface FabricEndpoint {
  readonly gid: string;
  /** The responder, synchronously: its answer, or undefined to drop the request unanswered. */
  receive(qpn: number, request: WireRequest): WireResponse | undefined;
  retryAfterRnr(qpn: number): void;
}

/** IBA 9.7.6.1.3 local ACK timeout: 4.096 us * 2^timeout; 0 means wait forever. */
export function ackTimeoutMs(timeout: number): number {
  return timeout === 0 ? 0 : 4.096e-3 * 2 ** timeout;
}

/** IBA table 45: the RNR NAK timer field in milliseconds (code 0 is 655.36 ms). */
export function rnrTimerMs(code: number): number {
  return RNR_TIMER_MS[code & 31]!;
}

const RNR_TIMER_MS = [
  655.36, 0.01, 0.02, 0.03, 0.04, 0.06, 0.08, 0.12, 0.16, 0.24, 0.32, 0.48, 0.64, 0.96, 1.28, 1.92, 2.56, 3.84, 5.12, 7.68, 10.24,
  15.36, 20.48, 30.72, 40.96, 61.44, 81.92, 122.88, 163.84, 245.76, 327.68, 491.52,
];
