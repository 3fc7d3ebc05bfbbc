import { errno, type ErrnoError } from '@p2p/errno';
import { decodeWqes as unpackWqes } from '@p2p/verbs';
import type { SendWr } from '../qp/work-request';

/**
 * Work requests read off the wire, up to the first that could not be read:
 * `error` then belongs to wrs[wrs.length], which becomes ibv_post_send()'s
 * bad_wr once the ones before it are posted.
 */
export interface DecodedSendWrs {
  readonly wrs: SendWr[];
  readonly error?: ErrnoError;
}

/**
 * PostStreamRequest.wqes as the NIC reads them (the layout is @p2p/verbs'):
 * a WQE it cannot read is EINVAL at that index. The opcode is passed
 * through: the QP refuses one it does not know at that WR (EINVAL), as
 * mlx5_post_send() does.
 */
export function decodeWqes(bytes: Uint8Array): DecodedSendWrs {
  const { wrs, bad } = unpackWqes(bytes);
  const sendWrs = wrs as SendWr[];
  return bad === undefined ? { wrs: sendWrs } : { wrs: sendWrs, error: errno('EINVAL', `packed WQE ${bad.index}: ${bad.reason}`) };
}
