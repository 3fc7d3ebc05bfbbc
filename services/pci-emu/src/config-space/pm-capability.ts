import type { ConfigLayout } from './config-space';
import {
  PCI_CAP_ID_PM,
  PCI_PM_CTRL,
  PCI_PM_CTRL_NO_SOFT_RESET,
  PCI_PM_CTRL_STATE_MASK,
  PCI_PM_PMC,
} from './pci-regs';

/** PMCSR PowerState encodings (PCI_D0 .. PCI_D3hot in include/linux/pci.h). */
export const PM_STATE_D0 = 0;
export const PM_STATE_D3HOT = 3;

/** PMC version field: 3 = PCI Bus Power Management Interface spec r1.2. */
const PM_CAP_VERSION_1_2 = 3;

/**
 * Power Management capability: only D0 and D3hot are supported (PMC
 * PCI_PM_CAP_D1/D2 clear) and no PME, so PME_En and PME_Status are read-only
 * zero. PowerState is writable; the function discards writes of the
 * unsupported D1/D2 encodings (see pci-function.ts). No_Soft_Reset is a
 * read-only property of the hardware: clear means D3hot -> D0 resets the
 * function, which is what pci_pm_reset() relies on.
 */
export function layoutPmCapability(layout: ConfigLayout, at: number, next: number, noSoftReset: boolean): void {
  layout
    .field(at, 1, PCI_CAP_ID_PM)
    .field(at + 1, 1, next)
    .field(at + PCI_PM_PMC, 2, PM_CAP_VERSION_1_2)
    .field(at + PCI_PM_CTRL, 2, noSoftReset ? PCI_PM_CTRL_NO_SOFT_RESET : 0, {
      writable: PCI_PM_CTRL_STATE_MASK,
    });
}
