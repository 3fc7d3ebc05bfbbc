import { PCI_COMMAND, PCI_COMMAND_IO, PCI_COMMAND_MASTER, PCI_COMMAND_MEMORY, PCI_ROM_RESOURCE } from '../uapi/pci-regs';
import { runtimePmExit } from './low-power';
import { tryResetFunction } from './saved-state';
import { vfioSetPowerState } from './power-state';
import type { VfioPciCore } from './vfio-pci-core';

/** pci_clear_master() and the PCI_COMMAND enables pci_enable_device() sets, in one write if anything changes. */
async function setCommand(core: VfioPciCore, enable: number): Promise<void> {
  const command = await core.pci.configRead(core.bdf, PCI_COMMAND, 2);
  const wanted = (command & ~PCI_COMMAND_MASTER) | enable;
  if (wanted !== command) {
    await core.pci.configWrite(core.bdf, PCI_COMMAND, 2, wanted);
  }
}

/**
 * vfio_pci_core_enable(), at the first open: D0, bus mastering off, decode on
 * for the kinds of BAR the function has (pci_enable_device()), and vconfig
 * initialised from the hardware (vfio_config_init()). The reset the kernel
 * also tries here is not modelled.
 */
export async function enableDevice(core: VfioPciCore): Promise<void> {
  await vfioSetPowerState(core, 'D0');
  const bars = core.bars.filter((bar) => bar.index !== PCI_ROM_RESOURCE);
  const memory = bars.some((bar) => bar.kind !== 'io') ? PCI_COMMAND_MEMORY : 0;
  const io = bars.some((bar) => bar.kind === 'io') ? PCI_COMMAND_IO : 0;
  await setCommand(core, memory | io);
  core.virtualBars.reset();
}

/**
 * vfio_pci_core_close_device(), at the last close: leave low power
 * (vfio_pci_runtime_pm_exit(), then the resume), back to D0, bus mastering
 * off, then vfio_pci_dma_buf_cleanup(): every buffer revoked for good; then
 * vfio_pci_core_disable()'s reset (__pci_reset_function_locked() between
 * saving and restoring the state), so the next owner never finds the
 * function as the last one left it: an NVMe controller still enabled, its
 * queues at the dead owner's IOVAs. A function that went away has no
 * hardware left to touch. (The kernel's idle D3 on close is not modelled.)
 */
export async function disableDevice(core: VfioPciCore): Promise<void> {
  if (core.registered) {
    if (core.lowPower.engaged) {
      await runtimePmExit(core, 'resume-after');
    }
    await vfioSetPowerState(core, 'D0');
    await setCommand(core, 0);
  }
  await core.revokeForGood('close');
  if (core.registered) {
    await tryResetFunction(core.pci, core.bdf, core.layout.hasFlr);
  }
}
