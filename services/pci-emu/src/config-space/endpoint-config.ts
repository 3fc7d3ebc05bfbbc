import { layoutBar, layoutRom, type BarShape } from './bar-register';
import { ConfigLayout } from './config-space';
import { layoutExpressCapability } from './express-capability';
import { layoutPmCapability } from './pm-capability';
import { layoutType0Header, type PciIds } from './type0-header';

/** Where the two capabilities sit (a driver would find them with pci_find_capability()). */
export const PM_CAP_OFFSET = 0x40;
export const EXP_CAP_OFFSET = 0x60;

export interface EndpointConfigOptions {
  readonly ids: PciIds;
  readonly multiFunction: boolean;
  /** BARs with the bus address firmware assigned them. */
  readonly bars: readonly { readonly shape: BarShape; readonly busAddress: number }[];
  /** Expansion ROM; size 0 means none. */
  readonly rom: { readonly size: number; readonly busAddress: number };
  readonly noSoftReset: boolean;
  /** Negotiated and maximum link width (x1 .. x16), informative. */
  readonly linkWidth: number;
}

/**
 * The power-on config image of a PCIe endpoint: type-0 header, BARs, ROM BAR,
 * then PM -> PCI Express capabilities. Extended config space (0x100-0xfff)
 * holds no capability, so its first dword reads 0 as PCI_EXT_CAP walks expect.
 *
 * BARs default to the addresses firmware assigned during enumeration rather
 * than 0: this process has no kernel to pci_restore_state() them after a
 * reset, and MMIO is addressed by BAR index, never decoded by address.
 */
export function layoutEndpointConfig(options: EndpointConfigOptions): ConfigLayout {
  const layout = new ConfigLayout();
  layoutType0Header(layout, {
    ids: options.ids,
    multiFunction: options.multiFunction,
    hasIoBar: options.bars.some((bar) => bar.shape.space === 'io'),
    firstCapability: PM_CAP_OFFSET,
  });
  for (const bar of options.bars) {
    layoutBar(layout, bar.shape, bar.busAddress);
  }
  layoutRom(layout, options.rom.size, options.rom.busAddress);
  layoutPmCapability(layout, PM_CAP_OFFSET, EXP_CAP_OFFSET, options.noSoftReset);
  layoutExpressCapability(layout, EXP_CAP_OFFSET, 0, options.linkWidth);
  return layout;
}
