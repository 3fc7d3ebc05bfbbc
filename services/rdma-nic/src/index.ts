/** @p2p/rdma-nic domain: an RDMA NIC with rdma-core's verbs (PD, MR, dma-buf MR, CQ, RC QP) over an injected fabric. */

export { Nic, DEVICE_LIMITS, type NicOptions, type CreateQpOptions } from './nic';

// Verbs constants
export { QpState, WrOpcode, WcOpcode, WcStatus, AsyncEventType } from './verbs/enums';
export * from './verbs/access-flags';
export * from './verbs/qp-attr-mask';
export * from './verbs/send-flags';

// Memory
export type { MemoryWindow, DmaBufMemory } from './memory/memory';
export { MemoryRegion, HostMemoryRegion, DmabufMemoryRegion, type Translation } from './mr/memory-region';
export { ProtectionDomain } from './mr/protection-domain';
export { PAGE_SIZE } from './mr/reg-checks';

// Completion queues and events
export { CompletionQueue, MAX_CQE, roundCqe, type CompletionListener } from './cq/completion-queue';
export type { WorkCompletion } from './cq/work-completion';
export type { AsyncEvent, AsyncEventListener } from './events/async-events';

// Queue pairs
export { QueuePair, type QpCap, type SendEngine } from './qp/queue-pair';
export { MAX_RD_ATOMIC, PORT_NUM, type QpAttr } from './qp/qp-attr';
export { modifyQpRejection, qpStateName } from './qp/state-table';
export type { Sge, SendWr, RecvWr, PostResult } from './qp/work-request';

// The wire
export {
  WireOp,
  RNR_NAK,
  PSN_MASK,
  ackTimeoutMs,
  rnrTimerMs,
  type Fabric,
  type FabricEndpoint,
  type WireRequest,
  type WireResponse,
  type WireReply,
} from './transport/fabric';
export { MAX_MSG_SZ, RNR_RETRY_INFINITE } from './transport/requester';

// Testing
export { HeapMemory, HeapDmaBuf } from './testing/heap-memory';
export { InMemoryFabric } from './testing/in-memory-fabric';
export { DeferredFabric } from './testing/deferred-fabric';

// The service
export { startRdmaNic, RDMA_NIC_DEFAULTS, type RdmaNicDeps } from './service';
export type { AttachableFabric } from './service-fabric';
