/**
 * The NVMe controller's command engine: a pure domain module the device
 * model (nvme.ts) and its register file (nvme-registers.ts) wire to the bus.
 */
export {
  NvmeController,
  NVME_COMMANDS_PER_TURN,
  NVME_MDTS,
  NVME_MAX_TRANSFER_BYTES,
  type NvmeControllerOptions,
} from './nvme-controller';
export type { NvmeDoorbellPath, NvmeEvent, NvmeObserver } from './nvme-events';
export type { NvmeMemoryPort } from './nvme-memory';
export { NVME_MAX_IO_QUEUES, NVME_MAX_INTERRUPT_VECTORS } from './nvme-admin-queues';
export { NVME_MAX_NAMESPACES, type NvmeIdentity } from './nvme-identify';
export type { NvmeQueueDepth, NvmeQueueLocation } from './nvme-queue';
export { nvmeOpcodeName, nvmeQueueKind, nvmeStatusName, type NvmeQueueKind } from './nvme-names';
export { type NamespaceStore, NAMESPACE_BLOCK_SIZES } from './namespace-store';
export { FileNamespaceStore } from './namespace-file';
export { HeapNamespaceStore } from './namespace-heap';
export * from './nvme-regs';
export * from './nvme-status';
export * from './nvme-features';
export { NVME_ID_CNS_NS, NVME_ID_CNS_CTRL, NVME_ID_CNS_NS_ACTIVE_LIST, NVME_ID_CNS_NS_DESC_LIST } from './nvme-identify';
export { NVME_LOG_ERROR, NVME_LOG_SMART, NVME_LOG_FW_SLOT } from './nvme-log-pages';
export {
  decodeNvmeCommand,
  encodeNvmeCommand,
  NVME_SQE_SIZE,
  NVME_ADMIN_DELETE_SQ,
  NVME_ADMIN_CREATE_SQ,
  NVME_ADMIN_GET_LOG_PAGE,
  NVME_ADMIN_DELETE_CQ,
  NVME_ADMIN_CREATE_CQ,
  NVME_ADMIN_IDENTIFY,
  NVME_ADMIN_ABORT_CMD,
  NVME_ADMIN_SET_FEATURES,
  NVME_ADMIN_GET_FEATURES,
  NVME_CMD_FLUSH,
  NVME_CMD_WRITE,
  NVME_CMD_READ,
  NVME_CMD_WRITE_ZEROES,
  NVME_NSID_ALL,
  type NvmeCommand,
  type NvmeCommandFields,
} from './nvme-command';
export { decodeNvmeCompletion, encodeNvmeCompletion, NVME_CQE_SIZE, type NvmeCompletion } from './nvme-completion';
