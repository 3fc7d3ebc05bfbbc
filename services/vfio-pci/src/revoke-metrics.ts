import { Counter, type Registry } from 'prom-client';
import type { VfioPci } from './vfio-pci';

/**
 * vfio-pci's dma-buf revokes on /metrics, counted as they happen: buffers
 * revoked, by device and by trigger (what caused it: revoke-trigger.ts).
 * Returns the unsubscribe function.
 */
export function registerRevokeMetrics(registry: Registry, vfio: VfioPci): () => void {
  const revokes = new Counter({
    name: 'p2p_vfio_dmabuf_revokes_total',
    help: 'dma-bufs revoked, by device and trigger (mem-clear, d3hot, flr, reset, hot-reset, low-power; close and remove revoke for good)',
    labelNames: ['bdf', 'trigger'],
    registers: [registry],
  });
  return vfio.onRevoke(({ bdf, trigger, buffers }) => revokes.inc({ bdf, trigger }, buffers));
}
