import { Counter, type Registry } from 'prom-client';
import type { PciBus } from './bus/pci-bus';
import type { ResetKind } from './bus/pci-events';

/** The reset kinds as labels: flr, reset, power-on. */
const RESET_LABELS: Record<ResetKind, string> = { FLR: 'flr', RESET: 'reset', POWER_ON_RESET: 'power-on' };

/**
 * The PCI functions' metrics on /metrics: CPU accesses to each BAR, tallied
 * by the bus as plain numbers and read at each scrape (an MMIO doorbell
 * costs an increment, not a label lookup); resets and power transitions
 * counted from the bus's events as they happen. Returns the unsubscribe
 * function.
 */
export function registerPciMetrics(registry: Registry, bus: PciBus): () => void {
  new Counter({
    name: 'p2p_pci_mmio_accesses_total',
    help: 'CPU accesses to a BAR (a register-width MMIO, or one bulk RegionRead/RegionWrite transfer), by function, BAR (6: the ROM) and op (read, write)',
    labelNames: ['bdf', 'bar', 'op'],
    registers: [registry],
    collect() {
      this.reset();
      for (const { bdf, bar, reads, writes } of bus.mmioAccessCounts()) {
        if (reads > 0) this.inc({ bdf, bar: String(bar), op: 'read' }, reads);
        if (writes > 0) this.inc({ bdf, bar: String(bar), op: 'write' }, writes);
      }
    },
  });
  const resets = new Counter({
    name: 'p2p_pci_resets_total',
    help: 'Function resets, by kind: flr (PCIe FLR), reset (conventional), power-on (D3hot -> D0 without No_Soft_Reset, re-plug)',
    labelNames: ['bdf', 'kind'],
    registers: [registry],
  });
  const power = new Counter({
    name: 'p2p_pci_power_transitions_total',
    help: 'Power state transitions of a function (PMCSR), by from and to state (D0, D3hot)',
    labelNames: ['bdf', 'from', 'to'],
    registers: [registry],
  });
  return bus.onEvent((event) => {
    switch (event.type) {
      case 'reset':
        resets.inc({ bdf: event.bdf, kind: RESET_LABELS[event.kind] });
        return;
      case 'power-changed':
        power.inc({ bdf: event.bdf, from: event.from, to: event.to });
        return;
      default:
        return;
    }
  });
}
