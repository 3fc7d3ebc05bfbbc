import { errno } from '@p2p/errno';
import { PCI_CFG_SPACE_EXP_SIZE } from './pci-regs';

/** Config accesses are 1, 2 or 4 bytes, as pci_read_config_{byte,word,dword}. */
export type ConfigWidth = 1 | 2 | 4;

/**
 * Rejects what the kernel's PCI_OP_READ/PCI_OP_WRITE reject (drivers/pci/access.c:
 * PCIBIOS_BAD_REGISTER_NUMBER for a misaligned offset) plus anything outside the
 * 4 KiB extended config space. Thrown before any state is touched.
 */
export function checkConfigAccess(offset: number, width: number): asserts width is ConfigWidth {
  if (width !== 1 && width !== 2 && width !== 4) {
    throw errno('EINVAL', `config access width ${width} is not 1, 2 or 4 bytes`);
  }
  if (!Number.isInteger(offset) || offset < 0 || offset + width > PCI_CFG_SPACE_EXP_SIZE) {
    throw errno('EINVAL', `config offset ${offset} (+${width}) is outside the 4 KiB config space`);
  }
  if (offset % width !== 0) {
    throw errno('EINVAL', `config offset 0x${offset.toString(16)} is not aligned to ${width} bytes`);
  }
}

/** Rejects a value that does not fit the access width. */
export function checkConfigValue(value: number, width: ConfigWidth): void {
  if (!Number.isInteger(value) || value < 0 || value >= 2 ** (8 * width)) {
    throw errno('EINVAL', `config value ${value} does not fit in ${width} byte(s)`);
  }
}
