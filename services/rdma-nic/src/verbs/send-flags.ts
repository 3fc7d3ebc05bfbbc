/** rdma-core's verbs.h constants: one copy, in @p2p/verbs, shared with the NIC's users. */
export { IBV_SEND_FENCE, IBV_SEND_SIGNALED, IBV_SEND_SOLICITED, IBV_SEND_INLINE } from '@p2p/verbs';
