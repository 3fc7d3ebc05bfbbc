import type { PciIds } from '../config-space/type0-header';
import type { BarKind } from '../devices/device-model';
import type { FunctionKind } from '../topology/topology-schema';
import type { PowerState } from './pci-events';

export interface BarInfo {
  /** 0-5, or 6 (PCI_ROM_RESOURCE) for the expansion ROM. */
  readonly index: number;
  readonly size: number;
  readonly is64Bit: boolean;
  readonly prefetchable: boolean;
  readonly kind: BarKind | 'rom';
  /** Assigned from the host bridge window: what pci_bus_address() would return. */
  readonly busAddress: number;
  /** For kind 'memory', and 'registers' with a window: the name the BarMemory was created with. */
  readonly memoryName?: string;
  /** For kind 'registers': the part of the BAR that is memory (a page-aligned range of BAR offsets), if any. */
  readonly window?: { readonly offset: number; readonly length: number };
}

export interface FunctionInfo extends PciIds {
  /** Canonical "DDDD:BB:DD.F". */
  readonly bdf: string;
  readonly name: string;
  readonly kind: FunctionKind;
  readonly bars: readonly BarInfo[];
  readonly powerState: PowerState;
  /** The raw PCI_COMMAND register. */
  readonly command: number;
  /** Effective memory decode: PCI_COMMAND_MEMORY, in D0, present. */
  readonly memoryEnabled: boolean;
  /** Effective bus mastering: PCI_COMMAND_MASTER, in D0, present. */
  readonly busMaster: boolean;
  readonly present: boolean;
}
