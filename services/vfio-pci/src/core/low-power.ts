import { errno } from '@p2p/errno';
import { checkFeature, type FeatureCall } from '../feature/device-feature';
import { VFIO_DEVICE_FEATURE_SET, VFIO_LOW_POWER_ENTRY_WITH_WAKEUP_SIZE } from '../uapi/vfio';
import { vfioSetPowerState } from './power-state';
import { restoreState, saveState, type SavedState } from './saved-state';
import type { VfioPciCore } from './vfio-pci-core';

/** The runtime-PM low-power state the LOW_POWER features drive. */
export interface LowPowerState {
  /** vdev->pm_runtime_engaged. */
  readonly engaged: boolean;
  /** The fd given with LOW_POWER_ENTRY_WITH_WAKEUP (vdev->pm_wake_eventfd_ctx). */
  readonly wakeupFd: number | undefined;
  /** What the PCI core saved when it runtime-suspended the function to D3hot; undefined while not suspended. */
  readonly suspended: SavedState | undefined;
}

export const LOW_POWER_OFF: LowPowerState = { engaged: false, wakeupFd: undefined, suspended: undefined };

/**
 * vfio_pci_runtime_pm_entry(): revoke first (even if the call then fails),
 * EINVAL if low power is already engaged, else engage it. The usage count
 * drops to zero at once in the model, so the function runtime-suspends here:
 * vfio_pci_core_runtime_suspend() brings it to D0 through
 * vfio_pci_set_power_state(), then the PCI core saves its state and puts it
 * in D3hot.
 */
async function runtimePmEntry(core: VfioPciCore, wakeupFd: number | undefined): Promise<void> {
  await core.revoke('low-power');
  if (core.lowPower.engaged) {
    throw errno('EINVAL', `${core.bdf} is already in low power`);
  }
  await vfioSetPowerState(core, 'D0');
  const suspended = await saveState(core.pci, core.bdf);
  await core.pci.setPowerState(core.bdf, 'D3hot');
  core.lowPower = { engaged: true, wakeupFd, suspended };
}

/** The PCI core's runtime resume: D0 and the state saved at suspend. */
async function runtimeResume(core: VfioPciCore): Promise<void> {
  const saved = core.lowPower.suspended;
  if (saved === undefined) return;
  await core.pci.setPowerState(core.bdf, 'D0');
  await restoreState(core.pci, core.bdf, saved);
  core.lowPower = { ...core.lowPower, suspended: undefined };
}

/**
 * vfio_pci_runtime_pm_exit(): disengage, then un-revoke if memory decodes.
 * The LOW_POWER_EXIT ioctl runs on a resumed function (the ioctl path's
 * pm_runtime_resume_and_get()), so its buffers come back; at close the
 * resume comes only after the check, so they do not.
 */
export async function runtimePmExit(core: VfioPciCore, resume: 'resume-first' | 'resume-after'): Promise<void> {
  if (resume === 'resume-first') await runtimeResume(core);
  const suspended = core.lowPower.suspended;
  core.lowPower = { ...LOW_POWER_OFF, suspended };
  await core.unrevokeIfEnabled();
  if (resume === 'resume-after') await runtimeResume(core);
}

/** VFIO_DEVICE_FEATURE_LOW_POWER_ENTRY (vfio_pci_core_pm_entry()): SET only, no argument. */
export async function lowPowerEntry(core: VfioPciCore, call: FeatureCall): Promise<void> {
  if (checkFeature(call, VFIO_DEVICE_FEATURE_SET, 0, 'LOW_POWER_ENTRY') === 'probe') return;
  await core.memoryLock.run(() => runtimePmEntry(core, undefined));
}

/**
 * VFIO_DEVICE_FEATURE_LOW_POWER_ENTRY_WITH_WAKEUP
 * (vfio_pci_core_pm_entry_with_wakeup()): SET only, struct
 * vfio_device_low_power_entry_with_wakeup; a negative fd is EINVAL and one
 * the caller does not hold EBADF (eventfd_ctx_fdget()). The model has no
 * eventfds, so any file will do, and nothing signals it.
 */
export async function lowPowerEntryWithWakeup(core: VfioPciCore, pid: number, call: FeatureCall): Promise<void> {
  if (checkFeature(call, VFIO_DEVICE_FEATURE_SET, VFIO_LOW_POWER_ENTRY_WITH_WAKEUP_SIZE, 'LOW_POWER_ENTRY_WITH_WAKEUP') === 'probe') return;
  const wakeupFd = call.data.copy(0, VFIO_LOW_POWER_ENTRY_WITH_WAKEUP_SIZE, 'struct vfio_device_low_power_entry_with_wakeup').getInt32(0, true);
  if (wakeupFd < 0) {
    throw errno('EINVAL', `wakeup_eventfd ${wakeupFd} is negative`);
  }
  await core.context.dmaBufs.resolveFd(pid, wakeupFd);
  await core.memoryLock.run(() => runtimePmEntry(core, wakeupFd));
}

/** VFIO_DEVICE_FEATURE_LOW_POWER_EXIT (vfio_pci_core_pm_exit()): SET only; succeeds when not in low power too. */
export async function lowPowerExit(core: VfioPciCore, call: FeatureCall): Promise<void> {
  if (checkFeature(call, VFIO_DEVICE_FEATURE_SET, 0, 'LOW_POWER_EXIT') === 'probe') return;
  await core.memoryLock.run(() => runtimePmExit(core, 'resume-first'));
}
