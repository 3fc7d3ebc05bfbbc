import { errno } from '@p2p/errno';
import { checkU32, checkU64 } from '../uapi/u64';
import { VFIO_PCI_CONFIG_REGION_INDEX, VFIO_PCI_ROM_REGION_INDEX, VFIO_PCI_VGA_REGION_INDEX } from '../uapi/vfio';
import { barRegionRead, barRegionWrite } from './bar-rw';
import { configRegionRead, configRegionWrite } from './config-rw';
import type { VfioPciCore } from './vfio-pci-core';

function checkRegion(core: VfioPciCore, index: number, offset: bigint): void {
  checkU32(index, 'region index');
  checkU64(offset, 'offset');
  if (index === VFIO_PCI_VGA_REGION_INDEX) {
    throw errno('EINVAL', `${core.bdf} is not a VGA device: no VGA region`);
  }
  if (index > VFIO_PCI_VGA_REGION_INDEX) {
    throw errno('EINVAL', `region ${index} does not exist`);
  }
}

/** vfio_pci_rw() reading: config space, a BAR or the ROM. */
export async function regionRead(core: VfioPciCore, index: number, offset: bigint, count: number): Promise<Uint8Array> {
  checkRegion(core, index, offset);
  checkU32(count, 'count');
  return index === VFIO_PCI_CONFIG_REGION_INDEX ? configRegionRead(core, offset, count) : barRegionRead(core, index, offset, count);
}

/** vfio_pci_rw() writing: config space or a BAR; the ROM is read-only (EINVAL). Returns the bytes written. */
export async function regionWrite(core: VfioPciCore, index: number, offset: bigint, data: Uint8Array): Promise<number> {
  checkRegion(core, index, offset);
  if (index === VFIO_PCI_ROM_REGION_INDEX) {
    throw errno('EINVAL', 'the ROM region is read-only');
  }
  return index === VFIO_PCI_CONFIG_REGION_INDEX ? configRegionWrite(core, offset, data) : barRegionWrite(core, index, offset, data);
}
