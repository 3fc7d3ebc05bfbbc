import { errno } from '@p2p/errno';

/** A function address: PCI domain (segment), bus, device and function numbers. */
export interface Bdf {
  readonly domain: number;
  readonly bus: number;
  readonly device: number;
  readonly fn: number;
}

/** "DDDD:BB:DD.F" or "BB:DD.F" (domain 0000), hex, as pci_name() prints and sysfs accepts. */
const BDF_PATTERN = /^(?:([0-9a-f]{4}):)?([0-9a-f]{2}):([0-9a-f]{2})\.([0-7])$/i;

/** Parses a BDF; EINVAL names the text when it is malformed or out of range. */
export function parseBdf(text: string): Bdf {
  const match = BDF_PATTERN.exec(text);
  const device = match ? parseInt(match[3]!, 16) : NaN;
  // Five device-number bits in devfn (PCI_SLOT): 0x00-0x1f.
  if (!match || device > 0x1f) {
    throw errno('EINVAL', `"${text}" is not a PCI address DDDD:BB:DD.F (or BB:DD.F) with device 00-1f and function 0-7`);
  }
  return {
    domain: parseInt(match[1] ?? '0', 16),
    bus: parseInt(match[2]!, 16),
    device,
    fn: parseInt(match[4]!, 10),
  };
}

/** The canonical lower-case "DDDD:BB:DD.F" form every map in the model is keyed by. */
export function formatBdf(bdf: Bdf): string {
  const hex = (value: number, digits: number): string => value.toString(16).padStart(digits, '0');
  return `${hex(bdf.domain, 4)}:${hex(bdf.bus, 2)}:${hex(bdf.device, 2)}.${bdf.fn}`;
}

/** parseBdf then formatBdf: "3:00.0" style aliases collapse to one key. */
export function canonicalBdf(text: string): string {
  return formatBdf(parseBdf(text));
}
