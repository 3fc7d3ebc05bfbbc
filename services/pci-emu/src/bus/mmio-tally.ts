import { PCI_ROM_RESOURCE } from '../config-space/pci-regs';

/** BARs 0-5 and the expansion ROM. */
const REGIONS = PCI_ROM_RESOURCE + 1;

/** CPU accesses to one function's BARs so far, by BAR and direction. */
export interface MmioAccessCount {
  readonly bdf: string;
  readonly bar: number;
  readonly reads: number;
  readonly writes: number;
}

/**
 * CPU accesses (MMIO, and the bulk reads and writes of RegionRead and
 * RegionWrite) tallied per function, BAR and direction. An access costs one
 * map lookup and an increment, so doorbell-rate traffic stays cheap; the
 * counts are read only when /metrics is scraped.
 */
export class MmioTally {
  /** By BDF: reads at [bar], writes at [REGIONS + bar]. */
  readonly #counts = new Map<string, number[]>();

  count(bdf: string, bar: number, op: 'read' | 'write'): void {
    let counts = this.#counts.get(bdf);
    if (counts === undefined) {
      counts = new Array<number>(2 * REGIONS).fill(0);
      this.#counts.set(bdf, counts);
    }
    counts[op === 'read' ? bar : REGIONS + bar]!++;
  }

  /** Every (function, BAR) accessed at least once. */
  *counts(): IterableIterator<MmioAccessCount> {
    for (const [bdf, counts] of this.#counts) {
      for (let bar = 0; bar < REGIONS; bar++) {
        const reads = counts[bar]!;
        const writes = counts[REGIONS + bar]!;
        if (reads > 0 || writes > 0) yield { bdf, bar, reads, writes };
      }
    }
  }
}
