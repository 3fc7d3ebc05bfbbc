import { Counter, Gauge, type Registry } from 'prom-client';
import type { PciBus } from './bus/pci-bus';

/**
 * The IOMMU's and the DMA engines' metrics on /metrics: faults, maps and
 * unmaps and transfers counted from the bus's events as they happen; mapped
 * bytes and held host segments read from the IOMMU at each scrape. Returns
 * the unsubscribe function.
 */
export function registerPlatformMetrics(registry: Registry, bus: PciBus): () => void {
  const faults = new Counter({
    name: 'p2p_iommu_faults_total',
    help: 'DMAs the IOMMU refused, by requester and reason (NO_DOMAIN, NOT_MAPPED, PERMISSION)',
    labelNames: ['bdf', 'reason'],
    registers: [registry],
  });
  const maps = new Counter({ name: 'p2p_iommu_maps_total', help: 'iommu_map() calls that mapped a range', registers: [registry] });
  const unmaps = new Counter({
    name: 'p2p_iommu_unmaps_total',
    help: 'iommu_unmap() calls (and destroyed domains) that cleared mapped pages',
    registers: [registry],
  });
  const transfers = new Counter({
    name: 'p2p_dma_transfers_total',
    help: 'DMA-engine transfers, by final STATUS (DONE, ERROR) and ERROR code',
    labelNames: ['status', 'error'],
    registers: [registry],
  });
  const bytes = new Counter({ name: 'p2p_dma_bytes_total', help: 'Bytes DMA engines wrote to their destinations', registers: [registry] });
  new Gauge({
    name: 'p2p_iommu_mapped_bytes',
    help: 'Bytes mapped in each IOMMU domain',
    labelNames: ['domain'],
    registers: [registry],
    collect() {
      this.reset();
      for (const domain of bus.iommu.listDomains()) this.set({ domain: String(domain.id) }, domain.mappedBytes);
    },
  });
  new Gauge({
    name: 'p2p_iommu_host_segments',
    help: 'Host segment files the IOMMU holds open and mapped',
    registers: [registry],
    collect() {
      this.set(bus.iommu.heldHostSegments);
    },
  });
  return bus.onEvent((event) => {
    switch (event.type) {
      case 'iommu-fault':
        faults.inc({ bdf: event.bdf, reason: event.reason });
        return;
      case 'iommu-mapped':
        maps.inc();
        return;
      case 'iommu-unmapped':
        unmaps.inc();
        return;
      case 'dma-completed':
        transfers.inc({ status: event.status, error: event.error });
        bytes.inc(event.bytes);
        return;
      default:
        return;
    }
  });
}
