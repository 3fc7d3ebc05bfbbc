import { errno } from '@p2p/errno';
import type { VfioPciCore } from '../core/vfio-pci-core';
import { checkFeature, type FeatureCall } from '../feature/device-feature';
import type { PciBar } from '../ports/pci-port';
import { DMA_BUF_KEPT_OPEN_FLAGS } from '../uapi/fcntl';
import {
  VFIO_DEVICE_FEATURE_GET,
  VFIO_DMA_BUF_FEATURE_SIZE,
  VFIO_DMA_BUF_SINGLE_FEATURE_SIZE,
  VFIO_PCI_ROM_REGION_INDEX,
} from '../uapi/vfio';
import { copyDmaBufHeader, copyDmaRanges, copySingleDmaBuf, type DmaRange } from './dma-buf-feature';
import { getDmaBufPhys, type PhysVec } from './phys-vec';
import { validateDmaBufInput } from './validate-ranges';
import { VfioDmaBuf } from './vfio-dma-buf';

interface DmaBufArgument {
  readonly regionIndex: number;
  readonly openFlags: number;
  readonly ranges: readonly DmaRange[];
}

/** "For PCI the region_index is the BAR number like everything else": ROM, config and VGA are ENODEV. */
function checkRegionIndex(regionIndex: number): void {
  if (regionIndex >= VFIO_PCI_ROM_REGION_INDEX) {
    throw errno('ENODEV', `region ${regionIndex} is not a BAR (0-5)`);
  }
}

/** The merged layout: header, nr_ranges and flags, region index, then the ranges themselves. */
function copyRangesArgument(call: FeatureCall): DmaBufArgument {
  const header = copyDmaBufHeader(call.data);
  if (header.nrRanges === 0 || header.flags !== 0) {
    throw errno('EINVAL', header.nrRanges === 0 ? 'nr_ranges is 0' : `flags ${header.flags} must be 0`);
  }
  checkRegionIndex(header.regionIndex);
  return { regionIndex: header.regionIndex, openFlags: header.openFlags, ranges: copyDmaRanges(call.data, header.nrRanges) };
}

/** The single-range layout: offset and length both 0 stand for the whole BAR. */
function copySingleArgument(call: FeatureCall, bars: readonly PciBar[]): DmaBufArgument {
  const argument = copySingleDmaBuf(call.data);
  checkRegionIndex(argument.regionIndex);
  const whole = argument.range.offset === 0n && argument.range.length === 0n;
  const length = whole ? (bars.find((bar) => bar.index === argument.regionIndex)?.size ?? 0n) : argument.range.length;
  return { regionIndex: argument.regionIndex, openFlags: argument.openFlags, ranges: [{ offset: argument.range.offset, length }] };
}

/**
 * The export itself, under memory_lock: the registration must still be
 * available (vfio_device_try_get_registration(): ENODEV once the device is
 * going away); the buffer starts revoked if memory does not decode now;
 * dma_buf_export() and dma_buf_fd() into the caller's table; then onto the
 * device's list. open_flags keep only the access mode and O_NONBLOCK.
 */
async function exportDmaBuf(core: VfioPciCore, pid: number, bar: PciBar, phys: PhysVec[], size: bigint, openFlags: number): Promise<number> {
  return core.memoryLock.run(async () => {
    if (!core.registered) {
      throw errno('ENODEV', `${core.bdf} is going away`);
    }
    const revoked = !(await core.memoryEnabled());
    const { directory, dmaBufs } = core.context;
    const { allowPin, cpuMmap } = core.variants;
    const buffer = new VfioDmaBuf(directory.handleFor(core.bdf), core.bdf, bar, phys, size, allowPin, cpuMmap, revoked);
    directory.add(buffer);
    try {
      const exported = await dmaBufs.exportDmaBuf({
        pid,
        size,
        openFlags: openFlags & DMA_BUF_KEPT_OPEN_FLAGS,
        revoked,
        providerBdf: core.bdf,
        allowPin,
        requirePeer2peer: true,
        cpuAccess: cpuMmap,
        handle: buffer.handle,
      });
      buffer.listOn(core.dmaBufs, exported.bufferId);
      return exported.fd;
    } catch (error) {
      directory.remove(buffer);
      throw error;
    }
  });
}

/**
 * VFIO_DEVICE_FEATURE_DMA_BUF (vfio_pci_core_feature_dma_buf()), in the
 * kernel's order: a driver that cannot export (EOPNOTSUPP, PROBE included);
 * vfio_check_feature() for GET; the argument (nr_ranges and flags EINVAL,
 * region index ENODEV, the ranges' copy ENOMEM or EFAULT); every range
 * non-empty and page aligned (EINVAL); a memory BAR (EINVAL); each range
 * inside it (EOVERFLOW, EINVAL); the registration (ENODEV). Returns the new
 * dma-buf's fd, or undefined for PROBE.
 */
export async function featureDmaBuf(core: VfioPciCore, pid: number, call: FeatureCall): Promise<number | undefined> {
  if (!core.variants.dmaBufExport) {
    throw errno('EOPNOTSUPP', `the driver of ${core.bdf} cannot export dma-bufs (no get_dmabuf_phys)`);
  }
  const single = core.variants.dmaBufLayout === 'single';
  const minsz = single ? VFIO_DMA_BUF_SINGLE_FEATURE_SIZE : VFIO_DMA_BUF_FEATURE_SIZE;
  if (checkFeature(call, VFIO_DEVICE_FEATURE_GET, minsz, 'VFIO_DEVICE_FEATURE_DMA_BUF') === 'probe') {
    return undefined;
  }
  const argument = single ? copySingleArgument(call, core.bars) : copyRangesArgument(call);
  const size = validateDmaBufInput(argument.ranges);
  const { bar, phys } = getDmaBufPhys(core.bars, argument.regionIndex, argument.ranges);
  return exportDmaBuf(core, pid, bar, phys, size, argument.openFlags);
}
