import { errno } from '@p2p/errno';
import { featureDmaBuf } from '../dma-buf/feature-dma-buf';
import type { FeatureCall } from '../feature/device-feature';
import {
  VFIO_DEVICE_FEATURE_DMA_BUF,
  VFIO_DEVICE_FEATURE_LOW_POWER_ENTRY,
  VFIO_DEVICE_FEATURE_LOW_POWER_ENTRY_WITH_WAKEUP,
  VFIO_DEVICE_FEATURE_LOW_POWER_EXIT,
  VFIO_DEVICE_FEATURE_MASK,
} from '../uapi/vfio';
import { lowPowerEntry, lowPowerEntryWithWakeup, lowPowerExit } from './low-power';
import type { VfioPciCore } from './vfio-pci-core';

/**
 * The feature switch of vfio_ioctl_device_feature() and
 * vfio_pci_core_ioctl_feature(). Migration and DMA logging (1, 2, 6-9) need
 * ops vfio-pci does not have, PCI_VF_TOKEN (0) a PF with VFs, BUS_MASTER (10)
 * is vfio-cdx's: all of them, and any unknown number, are ENOTTY. Returns the
 * fd a DMA_BUF GET created, else undefined.
 */
export async function deviceFeature(core: VfioPciCore, pid: number, call: FeatureCall): Promise<number | undefined> {
  const feature = call.flags & VFIO_DEVICE_FEATURE_MASK;
  switch (feature) {
    case VFIO_DEVICE_FEATURE_LOW_POWER_ENTRY:
      await lowPowerEntry(core, call);
      return undefined;
    case VFIO_DEVICE_FEATURE_LOW_POWER_ENTRY_WITH_WAKEUP:
      await lowPowerEntryWithWakeup(core, pid, call);
      return undefined;
    case VFIO_DEVICE_FEATURE_LOW_POWER_EXIT:
      await lowPowerExit(core, call);
      return undefined;
    case VFIO_DEVICE_FEATURE_DMA_BUF:
      return featureDmaBuf(core, pid, call);
    default:
      throw errno('ENOTTY', `device feature ${feature} is not supported by vfio-pci on ${core.bdf}`);
  }
}
