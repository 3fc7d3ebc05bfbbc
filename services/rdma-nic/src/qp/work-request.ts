import type { ErrnoError } from '@p2p/errno';

/** struct ibv_sge, ibv_send_wr and ibv_recv_wr: one copy, in @p2p/verbs. */
export type { Sge, SendWr, RecvWr } from '@p2p/verbs';

/**
 * ibv_post_send()/ibv_post_recv()'s answer: `posted` work requests went in;
 * when `error` is set, the one at index `posted` is bad_wr and the errno
 * the provider returned.
 */
export interface PostResult {
  readonly posted: number;
  readonly error?: ErrnoError;
}
