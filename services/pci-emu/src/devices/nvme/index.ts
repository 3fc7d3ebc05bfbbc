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
export type { NvmeQueueLocation } from './nvme-queue';
export { type NamespaceStore, NAMESPACE_BLOCK_SIZES } from './namespace-store';
export { FileNamespaceStore } from './namespace-file';
export { HeapNamespaceStore } from './namespace-heap';
export * from './nvme-regs';
export * from './nvme-status';
export {
  decodeNvmeCommand,
  encodeNvmeCommand,
  NVME_SQE_SIZE,
  type NvmeCommand,
  type NvmeCommandFields,
} from './nvme-command';
export { decodeNvmeCompletion, encodeNvmeCompletion, NVME_CQE_SIZE, type NvmeCompletion } from './nvme-completion';
