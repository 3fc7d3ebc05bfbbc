import type { ConfigLayout } from './config-space';
import {
  PCI_BASE_ADDRESS_0,
  PCI_BASE_ADDRESS_IO_MASK,
  PCI_BASE_ADDRESS_MEM_MASK,
  PCI_BASE_ADDRESS_MEM_PREFETCH,
  PCI_BASE_ADDRESS_MEM_TYPE_64,
  PCI_BASE_ADDRESS_SPACE_IO,
  PCI_ROM_ADDRESS,
  PCI_ROM_ADDRESS_ENABLE,
  PCI_ROM_ADDRESS_MASK,
} from './pci-regs';

const DWORD = 2 ** 32;

/** What a BAR register advertises: where it sits and what it decodes. */
export interface BarShape {
  /** 0-5; a 64-bit BAR also occupies index + 1. */
  readonly index: number;
  /** Bytes, a power of two: the BAR decodes size-aligned addresses. */
  readonly size: number;
  readonly is64Bit: boolean;
  readonly prefetchable: boolean;
  readonly space: 'memory' | 'io';
}

/**
 * Lays out BAR registers so sizing works the way __pci_read_base() probes it:
 * the address bits below the size are hardwired to 0, so writing all ones
 * reads back ~(size - 1) plus the read-only type bits (memory/IO,
 * PCI_BASE_ADDRESS_MEM_TYPE_64, PCI_BASE_ADDRESS_MEM_PREFETCH). A 64-bit BAR
 * spans two dwords, the upper holding address bits 63:32.
 */
export function layoutBar(layout: ConfigLayout, bar: BarShape, busAddress: number): void {
  const offset = PCI_BASE_ADDRESS_0 + 4 * bar.index;
  const sizeMask = bar.size - 1;
  if (bar.space === 'io') {
    const writable = (~sizeMask & PCI_BASE_ADDRESS_IO_MASK) >>> 0;
    layout.field(offset, 4, busAddress | PCI_BASE_ADDRESS_SPACE_IO, { writable });
    return;
  }
  const flags =
    (bar.is64Bit ? PCI_BASE_ADDRESS_MEM_TYPE_64 : 0) | (bar.prefetchable ? PCI_BASE_ADDRESS_MEM_PREFETCH : 0);
  const lowWritable = bar.size >= DWORD ? 0 : (~sizeMask & PCI_BASE_ADDRESS_MEM_MASK) >>> 0;
  layout.field(offset, 4, (busAddress % DWORD) + flags, { writable: lowWritable });
  if (bar.is64Bit) {
    const highWritable = ~Math.floor(sizeMask / DWORD) >>> 0;
    layout.field(offset + 4, 4, Math.floor(busAddress / DWORD), { writable: highWritable });
  }
}

/**
 * The expansion ROM BAR (PCI_ROM_ADDRESS): address bits above the size and
 * the enable bit are writable; sizing writes ~PCI_ROM_ADDRESS_ENABLE as
 * __pci_read_base() does. Without a ROM the register is hardwired to 0.
 */
export function layoutRom(layout: ConfigLayout, size: number, busAddress: number): void {
  const writable = size === 0 ? 0 : ((~(size - 1) & PCI_ROM_ADDRESS_MASK) | PCI_ROM_ADDRESS_ENABLE) >>> 0;
  layout.field(PCI_ROM_ADDRESS, 4, busAddress, { writable });
}
