import type { ConfigLayout } from './config-space';
import {
  PCI_CACHE_LINE_SIZE,
  PCI_CAPABILITY_LIST,
  PCI_CLASS_REVISION,
  PCI_COMMAND,
  PCI_COMMAND_INTX_DISABLE,
  PCI_COMMAND_IO,
  PCI_COMMAND_MASTER,
  PCI_COMMAND_MEMORY,
  PCI_COMMAND_PARITY,
  PCI_COMMAND_SERR,
  PCI_DEVICE_ID,
  PCI_HEADER_TYPE,
  PCI_HEADER_TYPE_MFD,
  PCI_HEADER_TYPE_NORMAL,
  PCI_INTERRUPT_LINE,
  PCI_INTERRUPT_PIN,
  PCI_STATUS,
  PCI_STATUS_CAP_LIST,
  PCI_STATUS_ERROR_BITS,
  PCI_SUBSYSTEM_ID,
  PCI_SUBSYSTEM_VENDOR_ID,
  PCI_VENDOR_ID,
} from './pci-regs';

/** The identity registers of a function. */
export interface PciIds {
  readonly vendorId: number;
  readonly deviceId: number;
  /** 24 bits: base class, sub-class, programming interface (e.g. 0x010802 for NVMe). */
  readonly classCode: number;
  readonly revision: number;
  readonly subsystemVendorId: number;
  readonly subsystemId: number;
}

export interface Type0HeaderOptions {
  readonly ids: PciIds;
  /** Sets PCI_HEADER_TYPE_MFD: other functions share this device number. */
  readonly multiFunction: boolean;
  /** PCI_COMMAND_IO is writable only if the function has an I/O BAR to decode. */
  readonly hasIoBar: boolean;
  /** Offset of the first capability (PCI_CAPABILITY_LIST). */
  readonly firstCapability: number;
}

/**
 * The fixed fields of a type-0 header. BARs and the ROM BAR are laid out
 * by bar-register.ts. Fields a PCI Express function hardwires (latency timer,
 * BIST, Min_Gnt/Max_Lat, the PCI-only command bits) stay read-only zero.
 */
export function layoutType0Header(layout: ConfigLayout, options: Type0HeaderOptions): void {
  const { ids } = options;
  const command =
    PCI_COMMAND_MEMORY |
    PCI_COMMAND_MASTER |
    PCI_COMMAND_PARITY |
    PCI_COMMAND_SERR |
    PCI_COMMAND_INTX_DISABLE |
    (options.hasIoBar ? PCI_COMMAND_IO : 0);
  layout
    .field(PCI_VENDOR_ID, 2, ids.vendorId)
    .field(PCI_DEVICE_ID, 2, ids.deviceId)
    .field(PCI_COMMAND, 2, 0, { writable: command })
    .field(PCI_STATUS, 2, PCI_STATUS_CAP_LIST, { rw1c: PCI_STATUS_ERROR_BITS })
    .field(PCI_CLASS_REVISION, 4, ids.classCode * 0x100 + ids.revision)
    // PCIe keeps Cache Line Size read/write for software compatibility only.
    .field(PCI_CACHE_LINE_SIZE, 1, 0, { writable: 0xff })
    .field(PCI_HEADER_TYPE, 1, options.multiFunction ? PCI_HEADER_TYPE_MFD : PCI_HEADER_TYPE_NORMAL)
    .field(PCI_SUBSYSTEM_VENDOR_ID, 2, ids.subsystemVendorId)
    .field(PCI_SUBSYSTEM_ID, 2, ids.subsystemId)
    .field(PCI_CAPABILITY_LIST, 1, options.firstCapability)
    .field(PCI_INTERRUPT_LINE, 1, 0, { writable: 0xff })
    // INTA#: legacy interrupts are the only ones modelled (no MSI/MSI-X capability).
    .field(PCI_INTERRUPT_PIN, 1, 1);
}
