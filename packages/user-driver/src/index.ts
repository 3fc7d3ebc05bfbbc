export { cpuView } from './cpu-view';
export { doorbellRegisters, u32, u64 } from './dma-engine';
export {
  NVME_PAGE,
  type NvmeRegisterPort,
  type DmaBuffer,
  type DmaAllocator,
  NvmeStatusError,
  NvmeQueuePair,
  type NvmeNamespaceInfo,
  type NvmeDriverOptions,
  NvmeDriver,
  syncForCpu,
  syncForDevice,
} from './nvme-driver';
export { type VfioClients, writePciCommand, type VfioDevice, VfioDmaSpace, type CpuAccess, type VfioDmaSpaceOptions } from './vfio-dma-space';
