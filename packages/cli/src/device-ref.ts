import { errno } from '@p2p/errno';
import type { pci } from '@p2p/proto';
import { parseSmall } from './format';

const BDF = /^[0-9a-f]{4}:[0-9a-f]{2}:[0-9a-f]{2}\.[0-7]$/i;

/** A function named by its BDF or its topology name (nvme1, accel0); ENODEV when there is none. */
export function resolveFunction(functions: readonly pci.FunctionInfo[], ref: string): pci.FunctionInfo {
  const found = functions.find((f) => f.name === ref || (BDF.test(ref) && f.bdf.toLowerCase() === ref.toLowerCase()));
  if (found === undefined) throw errno('ENODEV', `no function ${ref}: one of ${functions.map((f) => `${f.name} (${f.bdf})`).join(', ')}`);
  return found;
}

/** Where `p2p read` and `p2p write` go: config space, or a BAR by index. */
export type AddressSpace = { readonly kind: 'config' } | { readonly kind: 'bar'; readonly index: number };

/** `config`, `bar0`-`bar5`; EINVAL otherwise. */
export function parseSpace(text: string): AddressSpace {
  if (text === 'config') return { kind: 'config' };
  const bar = /^bar([0-5])$/.exec(text);
  if (bar !== null) return { kind: 'bar', index: Number(bar[1]) };
  throw errno('EINVAL', `${JSON.stringify(text)} is not an address space: config, or bar0 to bar5`);
}

/** An access width in bytes: 1, 2, 4 or 8 (8 only for BARs, as readq). */
export function parseWidth(text: string, space: AddressSpace): number {
  const width = parseSmall(text, 'width', 8);
  const allowed = space.kind === 'config' ? [1, 2, 4] : [1, 2, 4, 8];
  if (!allowed.includes(width)) throw errno('EINVAL', `width ${width} is not one of ${allowed.join(', ')} bytes`);
  return width;
}
