import type { WcOpcode, WcStatus, WrOpcode } from './enums';

/** struct ibv_sge. */
export interface Sge {
  readonly addr: number;
  readonly length: number;
  readonly lkey: number;
}

/** struct ibv_send_wr for an RC QP; the fields an opcode does not use are ignored. */
export interface SendWr {
  readonly wrId: bigint;
  readonly opcode: WrOpcode;
  readonly sgList: readonly Sge[];
  /** IBV_SEND_* bits. */
  readonly sendFlags: number;
  readonly immData?: number;
  readonly remoteAddr?: number;
  readonly rkey?: number;
  readonly compareAdd?: bigint;
  readonly swap?: bigint;
}

/** struct ibv_recv_wr. */
export interface RecvWr {
  readonly wrId: bigint;
  readonly sgList: readonly Sge[];
}

/**
 * struct ibv_wc. On an error status only wr_id, status, qp_num and
 * vendor_err are defined by verbs; the model still fills the opcode the
 * work request had, byte_len 0.
 */
export interface WorkCompletion {
  readonly wrId: bigint;
  readonly status: WcStatus;
  readonly opcode: WcOpcode;
  /** Bytes received for RECV/RECV_RDMA_WITH_IMM, read for RDMA_READ, 8 for atomics, else 0 (mlx5 leaves it for SEND/WRITE). */
  readonly byteLen: number;
  readonly immData: number;
  /** IBV_WC_WITH_IMM in wc_flags. */
  readonly withImm: boolean;
  readonly qpNum: number;
  /** The sending QP, for receive completions. */
  readonly srcQp: number;
  readonly vendorErr: number;
}
