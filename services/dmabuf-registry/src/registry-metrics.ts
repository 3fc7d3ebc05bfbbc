import { Counter, Gauge, Histogram, type Registry as MetricsRegistry } from 'prom-client';
import type { Registry } from './registry';

/**
 * From a tenth of a millisecond (an importer in the same process acking
 * inside move_notify) to ten seconds (past DMABUF_REGISTRY_ACK_TIMEOUT_MS's
 * ceiling of 60 s only a fence ends the wait, and that is counted apart).
 */
const MOVE_NOTIFY_ACK_BUCKETS = [0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10];

/**
 * The dma-buf core's metrics on /metrics: exports, revokes and fences
 * counted from the registry's events as they happen, the time from each
 * move_notify to its ack (the importer's, or the exit or detach that
 * counts as one) as a histogram, and live buffers and attachments read at
 * each scrape. Idle, it costs nothing: only moves in progress hold an entry.
 * Returns the unsubscribe function.
 */
export function registerRegistryMetrics(metrics: MetricsRegistry, registry: Registry): () => void {
  new Gauge({
    name: 'p2p_dmabuf_buffers',
    help: 'dma-bufs alive (bufinfo): exported or allocated and not yet released',
    registers: [metrics],
    collect() {
      this.set(registry.counts().buffers);
    },
  });
  new Gauge({
    name: 'p2p_dmabuf_attachments',
    help: 'Attachments of importers to dma-bufs, not yet detached or fenced',
    registers: [metrics],
    collect() {
      this.set(registry.counts().attachments);
    },
  });
  const exported = new Counter({
    name: 'p2p_dmabuf_exports_total',
    help: 'dma_buf_export() calls that made a buffer, by exporter (vfio-pci, system-heap, ...)',
    labelNames: ['exporter'],
    registers: [metrics],
  });
  const revokes = new Counter({
    name: 'p2p_dmabuf_revokes_total',
    help: "Buffers whose exporter revoked them (vfio_pci_dma_buf_move(), or for good at the device's close or the exporter's death), by exporter",
    labelNames: ['exporter'],
    registers: [metrics],
  });
  const fences = new Counter({
    name: 'p2p_dmabuf_fences_total',
    help: 'Importers fenced (force-detached) for not acking a move_notify before the deadline',
    registers: [metrics],
  });
  const ackSeconds = new Histogram({
    name: 'p2p_dmabuf_move_notify_ack_seconds',
    help: 'Time from move_notify to its ack (or the exit or detach that counts as one); fenced importers are in p2p_dmabuf_fences_total instead',
    buckets: MOVE_NOTIFY_ACK_BUCKETS,
    registers: [metrics],
  });
  /**
   * When each attachment was told, by attachment id: a buffer's moves are
   * serialised by its reservation lock, so an attachment has at most one
   * notification waiting; its ACK or FENCE removes the entry.
   */
  const told = new Map<number, number>();
  return registry.onEvent((event) => {
    switch (event.kind) {
      case 'EXPORT':
        exported.inc({ exporter: exporterOf(registry, event.bufferId) });
        return;
      case 'REVOKE':
        revokes.inc({ exporter: exporterOf(registry, event.bufferId) });
        return;
      case 'MOVE_NOTIFY':
        if (event.attachmentId !== undefined) told.set(event.attachmentId, performance.now());
        return;
      case 'ACK': {
        const since = event.attachmentId === undefined ? undefined : told.get(event.attachmentId);
        if (since === undefined) return;
        told.delete(event.attachmentId!);
        ackSeconds.observe((performance.now() - since) / 1000);
        return;
      }
      case 'FENCE':
        if (event.attachmentId !== undefined) told.delete(event.attachmentId);
        fences.inc();
        return;
      default:
        return;
    }
  });
}

/** Events are delivered as they happen, so the buffer they name is still in bufinfo. */
function exporterOf(registry: Registry, bufferId: number | undefined): string {
  return (bufferId === undefined ? undefined : registry.exporterOf(bufferId)) ?? 'unknown';
}
