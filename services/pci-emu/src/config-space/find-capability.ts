import type { ConfigSpace } from './config-space';
import { PCI_CAPABILITY_LIST, PCI_CAP_LIST_ID, PCI_CAP_LIST_NEXT, PCI_STATUS, PCI_STATUS_CAP_LIST } from './pci-regs';

/** Bound on list entries, so a looping list terminates (PCI_FIND_CAP_TTL). */
const PCI_FIND_CAP_TTL = 48;

/**
 * Walks the capability list as pci_find_capability() does: only if
 * PCI_STATUS_CAP_LIST is set, starting at PCI_CAPABILITY_LIST, ignoring the two
 * low pointer bits, stopping below 0x40. Returns the offset or undefined.
 */
export function findCapability(config: ConfigSpace, capId: number): number | undefined {
  if ((config.read(PCI_STATUS, 2) & PCI_STATUS_CAP_LIST) === 0) {
    return undefined;
  }
  let pos = config.read(PCI_CAPABILITY_LIST, 1);
  for (let ttl = PCI_FIND_CAP_TTL; ttl > 0 && pos >= 0x40; ttl--) {
    pos &= ~3;
    if (config.read(pos + PCI_CAP_LIST_ID, 1) === capId) {
      return pos;
    }
    pos = config.read(pos + PCI_CAP_LIST_NEXT, 1);
  }
  return undefined;
}
