import type { BarShape } from '../config-space/bar-register';
import type { PciIds } from '../config-space/type0-header';
import type { FunctionKind } from '../topology/topology-schema';
import type { BarMemory } from './bar-memory';
import type { RegisterOps } from './register-ops';

/** Registers modelled in JS (MMIO or, for 'io', port I/O), or memory another process may map. */
export type BarKind = 'registers' | 'memory' | 'io';

export type DeviceBar =
  | (BarShape & { readonly kind: 'registers' | 'io'; readonly registers: RegisterOps })
  | (BarShape & { readonly kind: 'memory'; readonly memory: BarMemory; readonly memoryName: string });

/**
 * What a device model gives the bus: identity, BARs with the ops or memory
 * behind each, and an optional expansion ROM image. The bus adds config
 * space, decode, power and reset around it.
 */
export interface DeviceModel {
  readonly kind: FunctionKind;
  readonly ids: PciIds;
  /** PCIe link width, informative (PCI_EXP_LNKCAP/LNKSTA). */
  readonly linkWidth: number;
  readonly bars: readonly DeviceBar[];
  /** ROM image; its length is the ROM BAR size. Undefined: no ROM. */
  readonly rom: Buffer | undefined;
}

/** Creates the memory behind BAR `index` of the function being built. */
export type BarMemoryAllocator = (index: number, size: number) => { memory: BarMemory; memoryName: string };
