import { Counter, type Registry } from 'prom-client';
import type { WireCounters } from './link/wire-counters';

/**
 * What the NIC's wire carried, on /metrics: packets each way, payload bytes
 * by path (the shared-memory ring, inline on the stream, the bulk stream
 * between hosts, or moved once between granted MRs), transport
 * timeouts and links. Read from the wire's own counters at each scrape.
 */
export function registerWireMetrics(registry: Registry, read: () => WireCounters): void {
  const metric = <L extends string>(name: string, help: string, labelNames: readonly L[], values: (c: WireCounters) => [Partial<Record<L, string>>, number][]): void => {
    new Counter({
      name,
      help,
      labelNames,
      registers: [registry],
      collect() {
        this.reset();
        for (const [labels, value] of values(read())) this.inc(labels, value);
      },
    });
  };
  metric('p2p_rdma_wire_packets_total', 'Transport packets (requests, answers, hints) sent and received', ['direction'], (c) => [
    [{ direction: 'sent' }, c.packetsSent],
    [{ direction: 'received' }, c.packetsReceived],
  ]);
  metric('p2p_rdma_wire_payload_bytes_total', 'Payload bytes sent and received: through the shared-memory ring, inline, or on the bulk stream between hosts', ['direction', 'path'], (c) => [
    [{ direction: 'sent', path: 'ring' }, c.ringBytesSent],
    [{ direction: 'sent', path: 'inline' }, c.inlineBytesSent],
    [{ direction: 'received', path: 'ring' }, c.ringBytesReceived],
    [{ direction: 'received', path: 'inline' }, c.inlineBytesReceived],
    [{ direction: 'sent', path: 'stream' }, c.streamBytesSent],
    [{ direction: 'received', path: 'stream' }, c.streamBytesReceived],
  ]);
  metric('p2p_rdma_wire_direct_bytes_total', 'Payload bytes this NIC, as responder, moved once, straight between its MR and a peer MR granted to it', [], (c) => [[{}, c.directBytes]]);
  metric('p2p_rdma_wire_timeouts_total', 'Requests whose local ACK timeout ran out unanswered', [], (c) => [[{}, c.timeouts]]);
  metric('p2p_rdma_wire_links_total', 'Links to peer NICs opened, and connect attempts that failed', ['outcome'], (c) => [
    [{ outcome: 'opened' }, c.linksOpened],
    [{ outcome: 'failed' }, c.connectFailures],
  ]);
}
