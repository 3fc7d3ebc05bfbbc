import type { ErrnoError } from '@p2p/errno';
import type { WrOpcode } from '../verbs/enums';

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
 * ibv_post_send()/ibv_post_recv()'s answer: `posted` work requests went in;
 * when `error` is set, the one at index `posted` is bad_wr and the errno
 * the provider returned.
 */
export interface PostResult {
  readonly posted: number;
  readonly error?: ErrnoError;
}
