import type { WcOpcode, WcStatus } from '../verbs/enums';

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
