import type { PowerState } from '../ports/pci-port';
import { restoreState, saveState } from './saved-state';
import type { VfioPciCore } from './vfio-pci-core';

/**
 * vfio_pci_set_power_state(): for NoSoftRst- functions, save the state on
 * the way to D3hot (vdev->pm_save) and restore it on the way back to D0,
 * since the D3hot -> D0 transition resets them. A transition to the current
 * state does nothing, as in pci_set_power_state().
 */
export async function vfioSetPowerState(core: VfioPciCore, state: PowerState): Promise<void> {
  const { pci, bdf } = core;
  const current = (await pci.functionInfo(bdf)).powerState;
  if (current === state) return;
  const saved = core.layout.needsPmRestore && state === 'D3hot' ? await saveState(pci, bdf) : undefined;
  await pci.setPowerState(bdf, state);
  if (saved !== undefined) {
    core.pmSave = saved;
  } else if (state === 'D0' && core.pmSave !== undefined) {
    const restore = core.pmSave;
    core.pmSave = undefined;
    await restoreState(pci, bdf, restore);
  }
}
