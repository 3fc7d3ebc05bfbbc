import { errno } from '@p2p/errno';
import { vfioSetPowerState } from './power-state';
import { tryResetFunction } from './saved-state';
import type { VfioPciCore } from './vfio-pci-core';

/**
 * VFIO_DEVICE_RESET (vfio_pci_ioctl_reset()), under memory_lock: D0 first
 * (restoring pm_save), revoke every buffer, pci_try_reset_function() (which
 * saves and restores the function's state, so decode comes back as it was),
 * then un-revoke if memory decodes. The pin variant refuses with EINVAL
 * while any buffer is pinned: a pinned importer cannot be told.
 */
export async function resetDevice(core: VfioPciCore): Promise<void> {
  await core.memoryLock.run(async () => {
    if (core.variants.allowPin && core.pinned) {
      throw errno('EINVAL', `${core.bdf} has pinned dma-bufs: it cannot be reset under their importers`);
    }
    await vfioSetPowerState(core, 'D0');
    await core.revoke('reset');
    try {
      await tryResetFunction(core.pci, core.bdf, core.layout.hasFlr);
    } finally {
      await core.unrevokeIfEnabled();
    }
  });
}
