import type { PciPort } from '../ports/pci-port';
import { PCI_COMMAND, PCI_COMMAND_INTX_DISABLE } from '../uapi/pci-regs';

/**
 * struct pci_saved_state, as far as the model needs it: PCI_COMMAND, whose
 * memory, I/O and bus-master enables are what a reset or a NoSoftRst- power
 * cycle loses. (BARs survive in the model: the function keeps its firmware
 * assignment through resets.)
 */
export interface SavedState {
  readonly command: number;
}

/** pci_save_state(). */
export async function saveState(pci: PciPort, bdf: string): Promise<SavedState> {
  return { command: await pci.configRead(bdf, PCI_COMMAND, 2) };
}

/** pci_restore_state(). */
export async function restoreState(pci: PciPort, bdf: string, saved: SavedState): Promise<void> {
  await pci.configWrite(bdf, PCI_COMMAND, 2, saved.command);
}

/**
 * pci_dev_save_and_disable(): wake the function to D0, save its state, and
 * disable it (PCI_COMMAND = INTX_DISABLE, as pci_reset_function() does)
 * before a reset.
 */
export async function saveAndDisable(pci: PciPort, bdf: string): Promise<SavedState> {
  if ((await pci.functionInfo(bdf)).powerState !== 'D0') {
    await pci.setPowerState(bdf, 'D0');
  }
  const saved = await saveState(pci, bdf);
  await pci.configWrite(bdf, PCI_COMMAND, 2, PCI_COMMAND_INTX_DISABLE);
  return saved;
}

/**
 * pci_try_reset_function(): save and disable, reset (FLR when the function
 * has it, else the conventional reset), and restore the saved state whether
 * or not the reset worked, so decode comes back as it was.
 */
export async function tryResetFunction(pci: PciPort, bdf: string, hasFlr: boolean): Promise<void> {
  const saved = await saveAndDisable(pci, bdf);
  try {
    await (hasFlr ? pci.functionLevelReset(bdf) : pci.resetFunction(bdf));
  } finally {
    await restoreState(pci, bdf, saved);
  }
}
