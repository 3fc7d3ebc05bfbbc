import { errno } from '@p2p/errno';
import type { PciPort } from '../ports/pci-port';
import {
  PCI_CAP_ID_EXP,
  PCI_CAP_ID_PM,
  PCI_CAP_LIST_ID,
  PCI_CAP_LIST_NEXT,
  PCI_CAPABILITY_LIST,
  PCI_EXP_DEVCAP,
  PCI_EXP_DEVCAP_FLR,
  PCI_HEADER_TYPE,
  PCI_HEADER_TYPE_MASK,
  PCI_HEADER_TYPE_NORMAL,
  PCI_PM_CTRL,
  PCI_PM_CTRL_NO_SOFT_RESET,
  PCI_STATUS,
  PCI_STATUS_CAP_LIST,
} from '../uapi/pci-regs';

/** What vfio-pci learns of a function's config space at probe time. */
export interface ConfigLayout {
  /** pdev->pm_cap. */
  readonly pmCap: number | undefined;
  /** The PCI Express capability. */
  readonly expCap: number | undefined;
  /** pcie_has_flr(): DevCap advertises Function Level Reset. */
  readonly hasFlr: boolean;
  /** vfio_pci_probe_power_state(): NoSoftRst- devices lose their state in D3hot -> D0. */
  readonly needsPmRestore: boolean;
}

/** Bound on list entries, so a looping list terminates (PCI_FIND_CAP_TTL). */
const PCI_FIND_CAP_TTL = 48;

/** pci_find_capability(). */
async function findCapability(pci: PciPort, bdf: string, capId: number): Promise<number | undefined> {
  if (((await pci.configRead(bdf, PCI_STATUS, 2)) & PCI_STATUS_CAP_LIST) === 0) {
    return undefined;
  }
  let pos = await pci.configRead(bdf, PCI_CAPABILITY_LIST, 1);
  for (let ttl = PCI_FIND_CAP_TTL; ttl > 0 && pos >= 0x40; ttl--) {
    pos &= ~3;
    if ((await pci.configRead(bdf, pos + PCI_CAP_LIST_ID, 1)) === capId) {
      return pos;
    }
    pos = await pci.configRead(bdf, pos + PCI_CAP_LIST_NEXT, 1);
  }
  return undefined;
}

/**
 * vfio_pci_probe() as far as config space goes: only type-0 (normal) headers
 * are driven (EINVAL otherwise); find the PM and Express capabilities and
 * what resets and power transitions will need.
 */
export async function probeConfigLayout(pci: PciPort, bdf: string): Promise<ConfigLayout> {
  const headerType = (await pci.configRead(bdf, PCI_HEADER_TYPE, 1)) & PCI_HEADER_TYPE_MASK;
  if (headerType !== PCI_HEADER_TYPE_NORMAL) {
    throw errno('EINVAL', `${bdf} has header type ${headerType}: vfio-pci drives only normal (type 0) functions`);
  }
  const pmCap = await findCapability(pci, bdf, PCI_CAP_ID_PM);
  const expCap = await findCapability(pci, bdf, PCI_CAP_ID_EXP);
  const hasFlr = expCap !== undefined && ((await pci.configRead(bdf, expCap + PCI_EXP_DEVCAP, 4)) & PCI_EXP_DEVCAP_FLR) !== 0;
  const needsPmRestore = pmCap !== undefined && ((await pci.configRead(bdf, pmCap + PCI_PM_CTRL, 2)) & PCI_PM_CTRL_NO_SOFT_RESET) === 0;
  return { pmCap, expCap, hasFlr, needsPmRestore };
}
