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

/**
 * A request from requester to responder. `payload` holds views of the
 * requester's gathered SGEs (SEND and RDMA_WRITE), which the responder copies
 * straight into its memory: the one copy of the DMA. The views are valid only
 * for the duration of the call.
 */
export interface WireRequest {
  readonly op: WireOp;
  readonly srcGid: string;
  readonly srcQpn: number;
  readonly remoteAddr: number;
  readonly rkey: number;
  readonly length: number;
  readonly payload: readonly Uint8Array[];
  readonly withImm: boolean;
  readonly immData: number;
  readonly compareAdd: bigint;
  readonly swap: bigint;
}

/** The responder's receive-not-ready NAK (IB spec 9.7.5.2.8). */
export const RNR_NAK = -1;

/**
 * The responder's answer: SUCCESS (ACK) with `data` a view of the responder
 * memory for RDMA_READ, `original` for atomics; RNR_NAK; or the NAK's
 * completion status for the requester (REM_ACCESS_ERR, REM_INV_REQ_ERR,
 * REM_OP_ERR).
 */
export interface WireResponse {
  readonly status: WcStatus | typeof RNR_NAK;
  readonly data?: Uint8Array;
  readonly original?: bigint;
}

/**
 * The wire between NICs, addressed by (GID, QPN). `request` returns
 * undefined when nothing answers (no such NIC, no such QP, a QP not
 * accepting, a partition): the requester's transport timer runs out.
 */
export interface Fabric {
  request(dgid: string, dqpn: number, request: WireRequest): WireResponse | undefined;
  /** The responder posted a receive after answering RNR: the requester may retry now. */
  rnrCleared(dgid: string, dqpn: number): void;
}

/** What a NIC answers on the fabric. */
export interface FabricEndpoint {
  readonly gid: string;
  receive(qpn: number, request: WireRequest): WireResponse | undefined;
  retryAfterRnr(qpn: number): void;
}
