/**
 * What vfio-pci needs of the PCI subsystem (pci-emu behind it): function
 * info, hardware-style config access, MMIO, resets, power and the memory
 * behind BARs. Every call may reject with an ErrnoError (ENODEV once the
 * function is unplugged); vfio-pci passes the errno on.
 */

export type BarKind = 'registers' | 'memory' | 'io' | 'rom';
export type PowerState = 'D0' | 'D3hot';
export type ConfigWidth = 1 | 2 | 4;
export type MmioWidth = 1 | 2 | 4 | 8;

export interface PciBar {
  /** 0-5, or 6 (PCI_ROM_RESOURCE) for the expansion ROM. */
  readonly index: number;
  readonly size: bigint;
  readonly is64Bit: boolean;
  readonly prefetchable: boolean;
  /** 'registers' and 'memory' are memory space (IORESOURCE_MEM), 'io' is port I/O. */
  readonly kind: BarKind;
  /** pci_resource_start(): the model's CPU physical and bus address are the same. */
  readonly busAddress: bigint;
  /**
   * For a 'registers' BAR: the page-aligned part of it that is memory (NVMe's
   * doorbells, say), the only part that may be mmapped or exported; absent
   * when it has none.
   */
  readonly window?: { readonly offset: bigint; readonly length: bigint };
}

export interface PciFunctionInfo {
  /** Canonical "DDDD:BB:DD.F". */
  readonly bdf: string;
  /** Implemented BARs and the ROM, by index; absent ones and upper halves of 64-bit BARs are missing. */
  readonly bars: readonly PciBar[];
  /** Effective memory decode: PCI_COMMAND_MEMORY, in D0, present. */
  readonly memoryEnabled: boolean;
  readonly powerState: PowerState;
  readonly present: boolean;
}

/** A piece of a BAR range in the shared-memory segment files that back it. */
export interface BarExtent {
  readonly segment: string;
  readonly segmentOffset: number;
  readonly length: number;
}

export interface PciPort {
  /** Every function's BDF (for the functions a bus reset would reach). */
  listFunctions(): Promise<readonly string[]>;
  /** Also answers for an unplugged function (present: false); ENODEV for an unknown one. */
  functionInfo(bdf: string): Promise<PciFunctionInfo>;
  /** A config TLP: what the function returns. */
  configRead(bdf: string, offset: number, width: ConfigWidth): Promise<number>;
  /** A config TLP: read-only bits keep their value, as hardware does. */
  configWrite(bdf: string, offset: number, width: ConfigWidth, value: number): Promise<void>;
  /** decoded: false when the function did not claim the access (memory decode off, not D0); value is then all ones. */
  mmioRead(bdf: string, bar: number, offset: number, width: MmioWidth): Promise<{ value: bigint; decoded: boolean }>;
  /** False when the function did not claim the write, which was dropped. */
  mmioWrite(bdf: string, bar: number, offset: number, width: MmioWidth, value: bigint): Promise<boolean>;
  bulkRead(bdf: string, bar: number, offset: number, length: number): Promise<Uint8Array>;
  bulkWrite(bdf: string, bar: number, offset: number, data: Uint8Array): Promise<void>;
  /** pcie_flr(): set PCI_EXP_DEVCTL_BCR_FLR. */
  functionLevelReset(bdf: string): Promise<void>;
  /** A conventional reset (what a secondary bus reset does to each function below the bridge). */
  resetFunction(bdf: string): Promise<void>;
  /** PMCSR PowerState, as pci_raw_set_power_state() writes it. */
  setPowerState(bdf: string, state: PowerState): Promise<void>;
  /** The segments backing [offset, offset + length) (BAR offsets) of a memory BAR or a register BAR's window, in order. */
  barExtents(bdf: string, bar: number, offset: number, length: number): Promise<readonly BarExtent[]>;
  /**
   * Move a BAR's memory to fresh segment files (the old ones are unlinked),
   * so a fenced importer's stale mapping writes nowhere anybody reads.
   */
  relocateBar?(bdf: string, bar: number): Promise<void>;
}
