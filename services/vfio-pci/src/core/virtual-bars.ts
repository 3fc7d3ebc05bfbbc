import type { PciBar } from '../ports/pci-port';
import {
  PCI_BASE_ADDRESS_0,
  PCI_BASE_ADDRESS_5,
  PCI_BASE_ADDRESS_MEM_PREFETCH,
  PCI_BASE_ADDRESS_MEM_TYPE_64,
  PCI_BASE_ADDRESS_SPACE_IO,
  PCI_ROM_ADDRESS,
  PCI_ROM_ADDRESS_ENABLE,
  PCI_ROM_RESOURCE,
  PCI_STD_NUM_BARS,
} from '../uapi/pci-regs';

const U32 = 0xffff_ffffn;

/** vfio_generate_bar_flags(). */
function barFlags(bar: PciBar): number {
  if (bar.kind === 'io') return PCI_BASE_ADDRESS_SPACE_IO;
  return (bar.is64Bit ? PCI_BASE_ADDRESS_MEM_TYPE_64 : 0) | (bar.prefetchable ? PCI_BASE_ADDRESS_MEM_PREFETCH : 0);
}

/**
 * The BAR and ROM registers as the user sees them: fully virtualized in
 * vdev->vconfig (the hardware's never change), so BAR sizing works as on
 * hardware without moving anything. vfio_bar_fixup() applies the size mask
 * and type bits whenever they are read.
 */
export class VirtualBars {
  /** vconfig dwords PCI_BASE_ADDRESS_0..5, then PCI_ROM_ADDRESS. */
  readonly #dwords = new Uint32Array(PCI_STD_NUM_BARS + 1);

  constructor(private readonly bars: readonly PciBar[]) {}

  /** Whether config offset `offset` is a virtualized register. */
  static covers(offset: number): boolean {
    return (offset >= PCI_BASE_ADDRESS_0 && offset < PCI_BASE_ADDRESS_5 + 4) || (offset >= PCI_ROM_ADDRESS && offset < PCI_ROM_ADDRESS + 4);
  }

  /** vfio_config_init(): vconfig starts as the hardware's registers. */
  reset(): void {
    this.#dwords.fill(0);
    for (const bar of this.bars) {
      if (bar.index === PCI_ROM_RESOURCE) {
        this.#dwords[PCI_STD_NUM_BARS] = Number(bar.busAddress & U32);
        continue;
      }
      this.#dwords[bar.index] = Number(bar.busAddress & U32) | barFlags(bar);
      if (bar.is64Bit) this.#dwords[bar.index + 1] = Number((bar.busAddress >> 32n) & U32);
    }
  }

  read(offset: number, width: number): number {
    this.#fixup();
    const dword = this.#dwords[this.#slot(offset)]!;
    const shift = 8 * (offset % 4);
    return width === 4 ? dword >>> 0 : (dword >>> shift) & (width === 2 ? 0xffff : 0xff);
  }

  write(offset: number, width: number, value: number): void {
    const slot = this.#slot(offset);
    const shift = 8 * (offset % 4);
    const mask = width === 4 ? 0xffff_ffff : (width === 2 ? 0xffff : 0xff) << shift;
    this.#dwords[slot] = ((this.#dwords[slot]! & ~mask) | ((value << shift) & mask)) >>> 0;
  }

  #slot(offset: number): number {
    return offset >= PCI_ROM_ADDRESS ? PCI_STD_NUM_BARS : (offset - PCI_BASE_ADDRESS_0) >> 2;
  }

  /** vfio_bar_fixup(): unimplemented BARs read 0, implemented ones their size mask and type bits. */
  #fixup(): void {
    for (let i = 0; i < PCI_STD_NUM_BARS; i++) {
      const bar = this.bars.find((candidate) => candidate.index === i);
      if (bar === undefined) {
        this.#dwords[i] = 0;
        continue;
      }
      const mask = ~(bar.size - 1n);
      this.#dwords[i] = ((this.#dwords[i]! & Number(mask & U32)) | barFlags(bar)) >>> 0;
      if (bar.is64Bit) {
        this.#dwords[i + 1] = (this.#dwords[i + 1]! & Number((mask >> 32n) & U32)) >>> 0;
        i++;
      }
    }
    const rom = this.bars.find((candidate) => candidate.index === PCI_ROM_RESOURCE);
    const romMask = rom === undefined ? 0 : Number(~(rom.size - 1n) & U32) | PCI_ROM_ADDRESS_ENABLE;
    this.#dwords[PCI_STD_NUM_BARS] = (this.#dwords[PCI_STD_NUM_BARS]! & romMask) >>> 0;
  }
}
