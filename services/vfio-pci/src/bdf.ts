import { errno } from '@p2p/errno';

const BDF = /^(?:([0-9a-f]{1,4}):)?([0-9a-f]{1,2}):([0-9a-f]{1,2})\.([0-7])$/i;

/** "3:0.0", "03:00.0" or "0000:03:00.0" -> "0000:03:00.0" (device <= 0x1f); EINVAL otherwise. */
export function canonicalBdf(bdf: string): string {
  const match = BDF.exec(bdf);
  const device = match ? parseInt(match[3]!, 16) : 0;
  if (!match || device > 0x1f) {
    throw errno('EINVAL', `"${bdf}" is not a PCI address (DDDD:BB:DD.F)`);
  }
  const [, domain = '0', bus = '0', slot = '0', fn = '0'] = match;
  return `${domain.padStart(4, '0')}:${bus.padStart(2, '0')}:${slot.padStart(2, '0')}.${fn}`.toLowerCase();
}

/** "DDDD:BB" of a canonical BDF: the bus a secondary bus reset resets as a whole. */
export function busOf(bdf: string): string {
  return bdf.slice(0, 7);
}
