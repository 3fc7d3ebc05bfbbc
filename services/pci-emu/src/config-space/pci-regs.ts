/**
 * Register offsets and bits of a type-0 configuration header and the two
 * capabilities the model implements, named and valued as in
 * include/uapi/linux/pci_regs.h so code and kernel source can be read side by side.
 */

/** Configuration space of a PCI Express function: 4 KiB (PCI_CFG_SPACE_EXP_SIZE). */
export const PCI_CFG_SPACE_EXP_SIZE = 0x1000;

export const PCI_VENDOR_ID = 0x00;
export const PCI_DEVICE_ID = 0x02;
export const PCI_COMMAND = 0x04;
export const PCI_COMMAND_IO = 0x0001;
export const PCI_COMMAND_MEMORY = 0x0002;
export const PCI_COMMAND_MASTER = 0x0004;
export const PCI_COMMAND_PARITY = 0x0040;
export const PCI_COMMAND_SERR = 0x0100;
export const PCI_COMMAND_INTX_DISABLE = 0x0400;

export const PCI_STATUS = 0x06;
export const PCI_STATUS_CAP_LIST = 0x0010;
export const PCI_STATUS_PARITY = 0x0100;
export const PCI_STATUS_SIG_TARGET_ABORT = 0x0800;
export const PCI_STATUS_REC_TARGET_ABORT = 0x1000;
export const PCI_STATUS_REC_MASTER_ABORT = 0x2000;
export const PCI_STATUS_SIG_SYSTEM_ERROR = 0x4000;
export const PCI_STATUS_DETECTED_PARITY = 0x8000;
export const PCI_STATUS_ERROR_BITS =
  PCI_STATUS_DETECTED_PARITY |
  PCI_STATUS_SIG_SYSTEM_ERROR |
  PCI_STATUS_REC_MASTER_ABORT |
  PCI_STATUS_REC_TARGET_ABORT |
  PCI_STATUS_SIG_TARGET_ABORT |
  PCI_STATUS_PARITY;

export const PCI_CLASS_REVISION = 0x08;
export const PCI_CACHE_LINE_SIZE = 0x0c;
export const PCI_HEADER_TYPE = 0x0e;
export const PCI_HEADER_TYPE_NORMAL = 0x00;
export const PCI_HEADER_TYPE_MFD = 0x80;

export const PCI_BASE_ADDRESS_0 = 0x10;
export const PCI_BASE_ADDRESS_SPACE_IO = 0x01;
export const PCI_BASE_ADDRESS_MEM_TYPE_64 = 0x04;
export const PCI_BASE_ADDRESS_MEM_PREFETCH = 0x08;
export const PCI_BASE_ADDRESS_MEM_MASK = 0xfffffff0;
export const PCI_BASE_ADDRESS_IO_MASK = 0xfffffffc;
/** Index the kernel gives the expansion ROM resource (PCI_ROM_RESOURCE). */
export const PCI_ROM_RESOURCE = 6;

export const PCI_SUBSYSTEM_VENDOR_ID = 0x2c;
export const PCI_SUBSYSTEM_ID = 0x2e;
export const PCI_ROM_ADDRESS = 0x30;
export const PCI_ROM_ADDRESS_ENABLE = 0x01;
export const PCI_ROM_ADDRESS_MASK = 0xfffff800;
export const PCI_CAPABILITY_LIST = 0x34;
export const PCI_INTERRUPT_LINE = 0x3c;
export const PCI_INTERRUPT_PIN = 0x3d;

export const PCI_CAP_LIST_ID = 0;
export const PCI_CAP_LIST_NEXT = 1;
export const PCI_CAP_ID_PM = 0x01;
export const PCI_CAP_ID_EXP = 0x10;

/* Power Management capability (PCI Bus Power Management Interface spec r1.2). */
export const PCI_PM_PMC = 2;
export const PCI_PM_CAP_D1 = 0x0200;
export const PCI_PM_CAP_D2 = 0x0400;
export const PCI_PM_CTRL = 4;
export const PCI_PM_CTRL_STATE_MASK = 0x0003;
export const PCI_PM_CTRL_NO_SOFT_RESET = 0x0008;

/* PCI Express capability. */
export const PCI_EXP_FLAGS = 0x02;
export const PCI_EXP_FLAGS_TYPE_SHIFT = 4;
export const PCI_EXP_TYPE_ENDPOINT = 0x0;
export const PCI_EXP_DEVCAP = 0x04;
export const PCI_EXP_DEVCAP_PAYLOAD_256B = 0x00000001;
export const PCI_EXP_DEVCAP_EXT_TAG = 0x00000020;
export const PCI_EXP_DEVCAP_RBER = 0x00008000;
export const PCI_EXP_DEVCAP_FLR = 0x10000000;
export const PCI_EXP_DEVCTL = 0x08;
export const PCI_EXP_DEVCTL_CERE = 0x0001;
export const PCI_EXP_DEVCTL_NFERE = 0x0002;
export const PCI_EXP_DEVCTL_FERE = 0x0004;
export const PCI_EXP_DEVCTL_URRE = 0x0008;
export const PCI_EXP_DEVCTL_RELAX_EN = 0x0010;
export const PCI_EXP_DEVCTL_PAYLOAD = 0x00e0;
export const PCI_EXP_DEVCTL_EXT_TAG = 0x0100;
export const PCI_EXP_DEVCTL_NOSNOOP_EN = 0x0800;
export const PCI_EXP_DEVCTL_READRQ = 0x7000;
export const PCI_EXP_DEVCTL_READRQ_512B = 0x2000;
export const PCI_EXP_DEVCTL_BCR_FLR = 0x8000;
export const PCI_EXP_DEVSTA = 0x0a;
export const PCI_EXP_DEVSTA_CED = 0x0001;
export const PCI_EXP_DEVSTA_NFED = 0x0002;
export const PCI_EXP_DEVSTA_FED = 0x0004;
export const PCI_EXP_DEVSTA_URD = 0x0008;
export const PCI_EXP_LNKCAP = 0x0c;
export const PCI_EXP_LNKCAP_SLS_16_0GB = 0x00000004;
export const PCI_EXP_LNKCAP_MLW_SHIFT = 4;
export const PCI_EXP_LNKCTL = 0x10;
export const PCI_EXP_LNKCTL_ASPMC = 0x0003;
export const PCI_EXP_LNKCTL_RCB = 0x0008;
export const PCI_EXP_LNKCTL_CCC = 0x0040;
export const PCI_EXP_LNKCTL_ES = 0x0080;
export const PCI_EXP_LNKSTA = 0x12;
export const PCI_EXP_LNKSTA_CLS_16_0GB = 0x0004;
export const PCI_EXP_LNKSTA_NLW_SHIFT = 4;
export const PCI_EXP_LNKSTA_SLC = 0x1000;
export const PCI_EXP_DEVCAP2 = 0x24;
export const PCI_EXP_DEVCAP2_COMP_TMOUT_RANGES = 0x0000000f;
export const PCI_EXP_DEVCAP2_COMP_TMOUT_DIS = 0x00000010;
export const PCI_EXP_DEVCTL2 = 0x28;
export const PCI_EXP_DEVCTL2_COMP_TIMEOUT = 0x000f;
export const PCI_EXP_DEVCTL2_COMP_TMOUT_DIS = 0x0010;
export const PCI_EXP_LNKCAP2 = 0x2c;
/** Supported Link Speeds vector: 2.5, 5, 8 and 16 GT/s. */
export const PCI_EXP_LNKCAP2_SLS_UP_TO_16_0GB = 0x0000001e;
export const PCI_EXP_LNKCTL2 = 0x30;
export const PCI_EXP_LNKCTL2_TLS = 0x000f;
export const PCI_EXP_LNKCTL2_TLS_16_0GT = 0x0004;

/* ACS Capability Control bits (PCI_ACS_CTRL), as pci_bridge_has_acs_redir() tests them. */
export const PCI_ACS_SV = 0x0001;
export const PCI_ACS_RR = 0x0004;
export const PCI_ACS_CR = 0x0008;
export const PCI_ACS_UF = 0x0010;
