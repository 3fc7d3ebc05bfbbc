/**
 * The configuration-space registers vfio-pci looks at, named and valued as in
 * include/uapi/linux/pci_regs.h.
 */

/** Configuration space of a PCI Express function (PCI_CFG_SPACE_EXP_SIZE): pdev->cfg_size. */
export const PCI_CFG_SPACE_EXP_SIZE = 0x1000;

export const PCI_COMMAND = 0x04;
export const PCI_COMMAND_IO = 0x0001;
export const PCI_COMMAND_MEMORY = 0x0002;
export const PCI_COMMAND_MASTER = 0x0004;
export const PCI_COMMAND_INTX_DISABLE = 0x0400;

export const PCI_STATUS = 0x06;
export const PCI_STATUS_CAP_LIST = 0x0010;

export const PCI_HEADER_TYPE = 0x0e;
export const PCI_HEADER_TYPE_MASK = 0x7f;
export const PCI_HEADER_TYPE_NORMAL = 0;

export const PCI_BASE_ADDRESS_0 = 0x10;
export const PCI_BASE_ADDRESS_5 = 0x24;
export const PCI_BASE_ADDRESS_SPACE_IO = 0x01;
export const PCI_BASE_ADDRESS_MEM_TYPE_64 = 0x04;
export const PCI_BASE_ADDRESS_MEM_PREFETCH = 0x08;
export const PCI_ROM_ADDRESS = 0x30;
export const PCI_ROM_ADDRESS_ENABLE = 0x01;
/** The kernel's resource index of the expansion ROM. */
export const PCI_ROM_RESOURCE = 6;
/** BARs 0-5 (PCI_STD_NUM_BARS). */
export const PCI_STD_NUM_BARS = 6;

export const PCI_CAPABILITY_LIST = 0x34;
export const PCI_CAP_LIST_ID = 0;
export const PCI_CAP_LIST_NEXT = 1;
export const PCI_CAP_ID_PM = 0x01;
export const PCI_CAP_ID_EXP = 0x10;

/* Power Management capability. */
export const PCI_PM_CTRL = 4;
export const PCI_PM_CTRL_STATE_MASK = 0x0003;
export const PCI_PM_CTRL_NO_SOFT_RESET = 0x0008;
export const PCI_PM_CTRL_PME_ENABLE = 0x0100;
export const PCI_PM_CTRL_PME_STATUS = 0x8000;
/** PMCSR PowerState encodings. */
export const PCI_D0 = 0;
export const PCI_D3HOT = 3;

/* PCI Express capability. */
export const PCI_EXP_DEVCAP = 0x04;
export const PCI_EXP_DEVCAP_FLR = 0x10000000;
export const PCI_EXP_DEVCTL = 0x08;
export const PCI_EXP_DEVCTL_BCR_FLR = 0x8000;
