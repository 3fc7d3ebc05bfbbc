import { errno } from '@p2p/errno';
import { busOf, canonicalBdf } from '../bdf';
import type { PciPort } from '../ports/pci-port';
import { vfioSetPowerState } from './power-state';
import { restoreState, saveAndDisable, type SavedState } from './saved-state';
import type { VfioPciCore } from './vfio-pci-core';

/**
 * vfio_pci_dev_set_hot_reset() for the device set of one bus (`set`, every
 * function of that bus bound to vfio-pci, in bus order), on behalf of a
 * caller holding `named` device files. Every check comes before anything
 * changes: each function the bus reset reaches must be in the set
 * (vfio_pci_dev_set_resettable(): EINVAL); each open device must be named
 * (EINVAL); the pin variant refuses pinned buffers (EINVAL); every
 * memory_lock is try-locked (EBUSY if one is held). Then: revoke every
 * device's buffers, D0 for each, pci_reset_bus() (save and disable each,
 * reset, restore each), and un-revoke those whose memory decodes.
 */
export async function hotResetDevSet(pci: PciPort, set: readonly VfioPciCore[], named: ReadonlySet<VfioPciCore>): Promise<void> {
  const bus = busOf(set[0]!.bdf);
  for (const bdf of await pci.listFunctions()) {
    const canonical = canonicalBdf(bdf);
    if (busOf(canonical) === bus && !set.some((core) => core.bdf === canonical)) {
      throw errno('EINVAL', `a reset of bus ${bus} would reach ${canonical}, which is not bound to vfio-pci`);
    }
  }
  for (const core of set) {
    if (core.openCount > 0 && !named.has(core)) {
      throw errno('EINVAL', `${core.bdf} is open and the caller did not name it: it does not own the whole set`);
    }
    if (core.variants.allowPin && core.pinned) {
      throw errno('EINVAL', `${core.bdf} has pinned dma-bufs: the set cannot be reset under their importers`);
    }
  }
  const releases: (() => void)[] = [];
  try {
    for (const core of set) {
      const release = core.memoryLock.tryAcquire();
      if (release === undefined) {
        throw errno('EBUSY', `${core.bdf} is busy (memory_lock held)`);
      }
      releases.push(release);
    }
    for (const core of set) await core.revoke('hot-reset');
    try {
      for (const core of set) await vfioSetPowerState(core, 'D0');
      await resetBus(pci, set);
    } finally {
      for (const core of set) await core.unrevokeIfEnabled();
    }
  } finally {
    for (const release of releases) release();
  }
}

/** pci_reset_bus(): save and disable every function, one secondary bus reset, restore every function. */
async function resetBus(pci: PciPort, set: readonly VfioPciCore[]): Promise<void> {
  const saved: { core: VfioPciCore; state: SavedState }[] = [];
  try {
    for (const core of set) saved.push({ core, state: await saveAndDisable(pci, core.bdf) });
    for (const core of set) await pci.resetFunction(core.bdf);
  } finally {
    for (const { core, state } of saved) await restoreState(pci, core.bdf, state);
  }
}
