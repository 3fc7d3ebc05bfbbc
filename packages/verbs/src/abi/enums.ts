/**
 * The verbs enums with the numbering of proto/p2p/rdma/v1/rdma.proto, so the
 * service maps them one to one. Where the proto shifts rdma-core's values
 * (QpState, WrOpcode start at 1 there, 0 in verbs.h), the comment says so.
 */

/** enum ibv_qp_state plus one (IBV_QPS_RESET is 0 in verbs.h). */
export const QpState = {
  RESET: 1,
  INIT: 2,
  RTR: 3,
  RTS: 4,
  SQD: 5,
  SQE: 6,
  ERR: 7,
} as const;
export type QpState = (typeof QpState)[keyof typeof QpState];

/** enum ibv_wr_opcode plus one (IBV_WR_RDMA_WRITE is 0 in verbs.h). */
export const WrOpcode = {
  RDMA_WRITE: 1,
  RDMA_WRITE_WITH_IMM: 2,
  SEND: 3,
  SEND_WITH_IMM: 4,
  RDMA_READ: 5,
  ATOMIC_CMP_AND_SWP: 6,
  ATOMIC_FETCH_AND_ADD: 7,
} as const;
export type WrOpcode = (typeof WrOpcode)[keyof typeof WrOpcode];

/** enum ibv_wc_opcode, rdma-core's values (the draft proto has no receive opcodes yet). */
export const WcOpcode = {
  SEND: 0,
  RDMA_WRITE: 1,
  RDMA_READ: 2,
  COMP_SWAP: 3,
  FETCH_ADD: 4,
  RECV: 128,
  RECV_RDMA_WITH_IMM: 129,
} as const;
export type WcOpcode = (typeof WcOpcode)[keyof typeof WcOpcode];

/** enum ibv_wc_status, in rdma-core's order. */
export const WcStatus = {
  SUCCESS: 0,
  LOC_LEN_ERR: 1,
  LOC_QP_OP_ERR: 2,
  LOC_EEC_OP_ERR: 3,
  LOC_PROT_ERR: 4,
  WR_FLUSH_ERR: 5,
  MW_BIND_ERR: 6,
  BAD_RESP_ERR: 7,
  LOC_ACCESS_ERR: 8,
  REM_INV_REQ_ERR: 9,
  REM_ACCESS_ERR: 10,
  REM_OP_ERR: 11,
  RETRY_EXC_ERR: 12,
  RNR_RETRY_EXC_ERR: 13,
  LOC_RDD_VIOL_ERR: 14,
  REM_INV_RD_REQ_ERR: 15,
  REM_ABORT_ERR: 16,
  INV_EECN_ERR: 17,
  INV_EEC_STATE_ERR: 18,
  FATAL_ERR: 19,
  RESP_TIMEOUT_ERR: 20,
  GENERAL_ERR: 21,
} as const;
export type WcStatus = (typeof WcStatus)[keyof typeof WcStatus];

/**
 * enum ibv_event_type, the proto's AsyncEventType numbering; CQ_ERR
 * (IBV_EVENT_CQ_ERR) is not in the draft proto yet and takes the next value.
 */
export const AsyncEventType = {
  QP_FATAL: 1,
  QP_REQ_ERR: 2,
  QP_ACCESS_ERR: 3,
  COMM_EST: 4,
  SQ_DRAINED: 5,
  PORT_ACTIVE: 6,
  PORT_ERR: 7,
  DEVICE_FATAL: 8,
  CQ_ERR: 9,
} as const;
export type AsyncEventType = (typeof AsyncEventType)[keyof typeof AsyncEventType];
