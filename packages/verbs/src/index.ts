/**
 * @p2p/verbs: the verbs ABI shared by the model's NICs and their users
 * (rdma-core's verbs.h constants, packed WQEs and CQEs), and a
 * libibverbs-like client over gRPC.
 */
export * from './abi/access-flags';
export * from './abi/qp-attr-mask';
export * from './abi/send-flags';
export * from './abi/qp-ex';
export * from './abi/rereg-flags';
export { GID_BYTES, gidBytes, gidText, canonicalGid } from './abi/gid';
export { QpState, WrOpcode, WcOpcode, WcStatus, AsyncEventType } from './abi/enums';
export type { Sge, SendWr, RecvWr, WorkCompletion } from './abi/work-request';
export { WQE_BYTES, encodeWqe, encodeWqes, decodeWqes, type PackedSendWr, type UnpackedSendWr } from './abi/wqe';
export * as userQueues from './abi/user-queues';
export { CQE_BYTES, IBV_WC_WITH_IMM, encodeCqes, decodeCqes, type PackedCompletion } from './abi/cqe';
export { VerbsContext, type QpCapRequest, type ProcessIdentity, type RcPeer, type RcOptions, type HostMr, type QueueMode, type VerbsContextOptions } from './client/context';
export { UserQueues, UserQp, UserCq, MappedBuffer, RingPostStream, type QueueMemory, userQueuesUnavailable, WATCH_SPIN_MS } from './client/user-queues';
export { CallPostStream, type PostStream } from './client/post-stream';
export { QpEx } from './client/qp-ex';
