import type { ConfigWidth, PowerState } from '../ports/pci-port';
import {
  PCI_COMMAND,
  PCI_COMMAND_MEMORY,
  PCI_D0,
  PCI_D3HOT,
  PCI_EXP_DEVCAP,
  PCI_EXP_DEVCAP_FLR,
  PCI_EXP_DEVCTL,
  PCI_EXP_DEVCTL_BCR_FLR,
  PCI_PM_CTRL,
  PCI_PM_CTRL_PME_ENABLE,
  PCI_PM_CTRL_PME_STATUS,
  PCI_PM_CTRL_STATE_MASK,
} from '../uapi/pci-regs';
import { vfioSetPowerState } from './power-state';
import { tryResetFunction } from './saved-state';
import type { VfioPciCore } from './vfio-pci-core';
import { VirtualBars } from './virtual-bars';

const widthMask = (width: ConfigWidth): number => (width === 4 ? 0xffff_ffff : width === 2 ? 0xffff : 0xff);

/**
 * vfio_basic_config_write() for PCI_COMMAND: clearing MEM revokes every
 * buffer (and would zap the BAR mmaps) before the write reaches the
 * hardware; after it, buffers come back if memory decodes.
 */
async function writeCommand(core: VfioPciCore, width: ConfigWidth, value: number): Promise<void> {
  if ((value & PCI_COMMAND_MEMORY) === 0) {
    await core.revoke('mem-clear');
  }
  await core.pci.configWrite(core.bdf, PCI_COMMAND, width, value);
  // With MEM just written clear the device cannot decode, so there is nothing
  // to restore and no need to ask it (one hop fewer on the revoke path).
  if ((value & PCI_COMMAND_MEMORY) !== 0) await core.unrevokeIfEnabled();
}

/**
 * vfio_pm_config_write() for PMCSR: the write goes to the hardware with the
 * PowerState bits read-only and the PME bits virtualized, then
 * vfio_lock_and_set_power_state() makes the transition itself: a move to
 * D3hot revokes first, and buffers come back after if memory decodes. No
 * modelled function has D1 or D2, so those requests change nothing
 * (pci_set_power_state() fails and vfio ignores it).
 */
async function writePmCtrl(core: VfioPciCore, offset: number, width: ConfigWidth, value: number): Promise<void> {
  const kept = (PCI_PM_CTRL_STATE_MASK | PCI_PM_CTRL_PME_ENABLE | PCI_PM_CTRL_PME_STATUS) & widthMask(width);
  const current = await core.pci.configRead(core.bdf, offset, width);
  await core.pci.configWrite(core.bdf, offset, width, ((value & ~kept) | (current & kept)) >>> 0);
  const requested = value & PCI_PM_CTRL_STATE_MASK;
  const state: PowerState | undefined = requested === PCI_D0 ? 'D0' : requested === PCI_D3HOT ? 'D3hot' : undefined;
  if (state === 'D3hot') {
    await core.revoke('d3hot');
  }
  if (state !== undefined) {
    await vfioSetPowerState(core, state);
  }
  await core.unrevokeIfEnabled();
}

/**
 * vfio_exp_config_write(), for a chunk holding DevCtl's upper byte (`devctl`
 * is DevCtl's offset): PCI_EXP_DEVCTL_BCR_FLR is virtualized (it never
 * reaches the hardware and always reads 0). When it is written as 1 and
 * DevCap has FLR: revoke, pci_try_reset_function() (which saves and
 * restores the function's state), and un-revoke if memory decodes.
 */
async function writeExpCap(core: VfioPciCore, devctl: number, offset: number, width: ConfigWidth, value: number): Promise<void> {
  const flrBit = (PCI_EXP_DEVCTL_BCR_FLR * 2 ** (8 * (devctl - offset))) >>> 0;
  const flr = (value & flrBit) !== 0;
  await core.pci.configWrite(core.bdf, offset, width, (value & ~flrBit) >>> 0);
  if (!flr) return;
  const devcap = await core.pci.configRead(core.bdf, devctl - PCI_EXP_DEVCTL + PCI_EXP_DEVCAP, 4);
  if ((devcap & PCI_EXP_DEVCAP_FLR) === 0) return;
  await core.revoke('flr');
  try {
    await tryResetFunction(core.pci, core.bdf, true);
  } finally {
    await core.unrevokeIfEnabled();
  }
}

/**
 * One aligned chunk of a config write (vfio_config_do_rw()), with memory_lock
 * held: BAR and ROM registers go to vconfig only, PCI_COMMAND, PMCSR and the
 * Express capability's DevCtl take their write functions, anything else
 * goes to the hardware as written.
 */
export async function configWriteChunk(core: VfioPciCore, offset: number, width: ConfigWidth, value: number): Promise<void> {
  const { pmCap, expCap } = core.layout;
  if (VirtualBars.covers(offset)) {
    core.virtualBars.write(offset, width, value);
  } else if (offset === PCI_COMMAND) {
    await writeCommand(core, width, value);
  } else if (pmCap !== undefined && offset === pmCap + PCI_PM_CTRL) {
    await writePmCtrl(core, offset, width, value);
  } else if (expCap !== undefined && offset <= expCap + PCI_EXP_DEVCTL + 1 && expCap + PCI_EXP_DEVCTL + 1 < offset + width) {
    await writeExpCap(core, expCap + PCI_EXP_DEVCTL, offset, width, value);
  } else {
    await core.pci.configWrite(core.bdf, offset, width, value);
  }
}
