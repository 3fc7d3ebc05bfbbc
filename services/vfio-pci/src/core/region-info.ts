import { errno } from '@p2p/errno';
import type { PciBar } from '../ports/pci-port';
import { PCI_CFG_SPACE_EXP_SIZE, PCI_ROM_RESOURCE } from '../uapi/pci-regs';
import { checkU32, PAGE_SIZE } from '../uapi/u64';
import {
  VFIO_DEVICE_FLAGS_PCI,
  VFIO_DEVICE_FLAGS_RESET,
  VFIO_PCI_BAR5_REGION_INDEX,
  VFIO_PCI_CONFIG_REGION_INDEX,
  VFIO_PCI_NUM_IRQS,
  VFIO_PCI_NUM_REGIONS,
  VFIO_PCI_ROM_REGION_INDEX,
  VFIO_REGION_INFO_FLAG_CAPS,
  VFIO_REGION_INFO_FLAG_MMAP,
  VFIO_REGION_INFO_FLAG_READ,
  VFIO_REGION_INFO_FLAG_WRITE,
  vfioPciIndexToOffset,
} from '../uapi/vfio';

/** struct vfio_device_info. */
export interface DeviceInfo {
  readonly flags: number;
  readonly numRegions: number;
  readonly numIrqs: number;
}

/** One area of struct vfio_region_info_cap_sparse_mmap. */
export interface SparseMmapArea {
  readonly offset: bigint;
  readonly size: bigint;
}

/** struct vfio_region_info, with its sparse-mmap capability (VFIO_REGION_INFO_CAP_SPARSE_MMAP). */
export interface RegionInfo {
  readonly index: number;
  readonly flags: number;
  readonly size: bigint;
  readonly offset: bigint;
  readonly sparseMmapAreas: readonly SparseMmapArea[];
}

/** vfio_pci_ioctl_get_info(): reset works on every modelled function; no device-specific regions. */
export function deviceInfo(): DeviceInfo {
  return { flags: VFIO_DEVICE_FLAGS_PCI | VFIO_DEVICE_FLAGS_RESET, numRegions: VFIO_PCI_NUM_REGIONS, numIrqs: VFIO_PCI_NUM_IRQS };
}

/** vfio_pci_probe_mmaps(): memory-space BARs of whole pages. */
function mmapSupported(bar: PciBar): boolean {
  return bar.kind !== 'io' && bar.size % PAGE_SIZE === 0n;
}

/**
 * The mmappable areas of a BAR whose mmap is supported: a register BAR with
 * a memory window can be mapped there only, reported as the kernel reported
 * a BAR whose MSI-X table had to stay unmapped before 4.16
 * (msix_sparse_mmap_cap(): VFIO_REGION_INFO_CAP_SPARSE_MMAP with MMAP and
 * CAPS set): here one area, the window. Every other BAR maps whole and has
 * no areas.
 */
function sparseMmapAreas(bar: PciBar): SparseMmapArea[] {
  return bar.kind === 'registers' && bar.window !== undefined ? [{ offset: bar.window.offset, size: bar.window.length }] : [];
}

/**
 * vfio_pci_ioctl_get_region_info(): config space (read/write, 4 KiB), BARs
 * (read/write, mmap when supported, with sparse-mmap areas for a register
 * BAR's window; an absent BAR has size 0 and no flags), the ROM (read only,
 * when there is one). No function is VGA, so index 8 is EINVAL like every
 * index past the regions.
 */
export function regionInfo(bars: readonly PciBar[], index: number): RegionInfo {
  checkU32(index, 'region index');
  const offset = vfioPciIndexToOffset(index);
  const none = { index, offset, flags: 0, size: 0n, sparseMmapAreas: [] };
  if (index === VFIO_PCI_CONFIG_REGION_INDEX) {
    return { ...none, size: BigInt(PCI_CFG_SPACE_EXP_SIZE), flags: VFIO_REGION_INFO_FLAG_READ | VFIO_REGION_INFO_FLAG_WRITE };
  }
  if (index <= VFIO_PCI_BAR5_REGION_INDEX) {
    const bar = bars.find((candidate) => candidate.index === index);
    if (bar === undefined) return none;
    const flags = VFIO_REGION_INFO_FLAG_READ | VFIO_REGION_INFO_FLAG_WRITE;
    if (!mmapSupported(bar)) return { ...none, size: bar.size, flags };
    const areas = sparseMmapAreas(bar);
    return { ...none, size: bar.size, flags: flags | VFIO_REGION_INFO_FLAG_MMAP | (areas.length > 0 ? VFIO_REGION_INFO_FLAG_CAPS : 0), sparseMmapAreas: areas };
  }
  if (index === VFIO_PCI_ROM_REGION_INDEX) {
    const rom = bars.find((candidate) => candidate.index === PCI_ROM_RESOURCE);
    return rom === undefined ? none : { ...none, size: rom.size, flags: VFIO_REGION_INFO_FLAG_READ };
  }
  throw errno('EINVAL', `region ${index} does not exist (${VFIO_PCI_NUM_REGIONS} regions; no VGA region)`);
}
