import { errno } from '@p2p/errno';
import type { PinnedUserMemory, UserMemoryPort } from '../ports/user-memory-port';

/**
 * Process memory as vfio-pci can reach it while the registry lends no
 * process mappings to pin: none, so every pin faults, as get_user_pages()
 * does for an address nothing maps. IOMMU_IOAS_MAP and VFIO_IOMMU_MAP_DMA
 * still succeed on an IOAS with no domain (iommufd pins lazily) and fail
 * with EFAULT once a domain needs the pages; MAP_FILE of a vfio dma-buf
 * pins nothing and works.
 */
export class UnmappedUserMemory implements UserMemoryPort {
  async pin(pid: number, userVa: bigint): Promise<PinnedUserMemory> {
    throw errno('EFAULT', `pid ${pid} has no memory vfio-pci can pin at 0x${userVa.toString(16)}`);
  }
}
