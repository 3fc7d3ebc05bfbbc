/**
 * The ops table of a register BAR, in the spirit of the kernel's ops structs:
 * the bus splits every MMIO access into aligned dword accesses with byte
 * enables, so a device model implements registers once, at dword granularity.
 */
export interface RegisterOps {
  /** The dword at `offset` (4-byte aligned, inside the BAR). */
  read(offset: number): number;
  /**
   * A write of the byte lanes selected by `mask` (0xff per enabled byte):
   * bits outside `mask` were not written and must not be changed, cleared or set.
   */
  write(offset: number, value: number, mask: number): void;
  /** Every register back to its power-on value (FLR, reset, D3hot -> D0). */
  reset(): void;
}

/** Merges the written byte lanes into a register value. */
export function mergeLanes(old: number, value: number, mask: number): number {
  return ((old & ~mask) | (value & mask)) >>> 0;
}
