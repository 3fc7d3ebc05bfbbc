import { expect } from 'chai';
import { Registry as MetricsRegistry } from 'prom-client';
import { NIC, harness, type Harness } from './testing/harness';
import { registerRegistryMetrics } from './registry-metrics';

describe('registry metrics on /metrics', () => {
  let h: Harness;
  let metrics: MetricsRegistry;
  let stop: () => void;

  /** The value a scraper reads for the sample of `name` with exactly these labels (text format); 0 when there is none. */
  async function sample(name: string, labels: Record<string, string> = {}): Promise<number> {
    const wanted = Object.entries(labels).map(([k, v]) => `${k}="${v}"`).join(',');
    const line = `${name}${wanted === '' ? '' : `{${wanted}}`} `;
    const found = (await metrics.metrics()).split('\n').find((l) => l.startsWith(line));
    return found === undefined ? 0 : Number(found.slice(line.length));
  }

  /** A buffer of vfio-pci's with one dynamic importer attached, acking at once or never. */
  async function attached(autoAck: boolean): Promise<{ bufferId: number; pid: number; attachmentId: number }> {
    const holder = h.registry.openProcess('spdk');
    const { bufferId, fd } = h.owner.export(h.registry, holder, { size: 4096 });
    const { pid } = h.process('nic', autoAck);
    const { attachmentId } = await h.registry.attach({ pid: holder, fd, importerPid: pid, importerBdf: NIC, dynamic: true, peer2peer: true });
    return { bufferId, pid, attachmentId };
  }

  function setUp(ackTimeoutMs = 1000): void {
    h = harness({ ackTimeoutMs });
    metrics = new MetricsRegistry();
    stop = registerRegistryMetrics(metrics, h.registry);
  }

  afterEach(() => stop());

  it('p2p_dmabuf_exports_total: counts an export by its exporter', async () => {
    setUp();
    const holder = h.registry.openProcess('spdk');
    h.owner.export(h.registry, holder);
    h.owner.export(h.registry, holder);
    expect(await sample('p2p_dmabuf_exports_total', { exporter: 'vfio-pci' })).to.equal(2);
  });

  it('p2p_dmabuf_buffers and p2p_dmabuf_attachments: read live at the scrape, back to 0 once detached and closed', async () => {
    setUp();
    const holder = h.registry.openProcess('spdk');
    const { fd } = h.owner.export(h.registry, holder);
    const { pid } = h.process('nic');
    const { attachmentId } = await h.registry.attach({ pid: holder, fd, importerPid: pid, importerBdf: NIC, dynamic: true, peer2peer: true });
    expect(await sample('p2p_dmabuf_buffers')).to.equal(1);
    expect(await sample('p2p_dmabuf_attachments')).to.equal(1);
    await h.registry.detach(pid, attachmentId);
    await h.registry.close(holder, fd);
    expect(await sample('p2p_dmabuf_attachments')).to.equal(0);
    expect(await sample('p2p_dmabuf_buffers')).to.equal(0);
  });

  it('p2p_dmabuf_move_notify_ack_seconds: a revoke an importer acks is one observation', async () => {
    setUp();
    const { bufferId } = await attached(true);
    expect(await h.registry.move('vfio-pci', bufferId, { revoked: true })).to.deep.equal({ notified: 1, fenced: 0 });
    expect(await sample('p2p_dmabuf_move_notify_ack_seconds_count')).to.equal(1);
    expect(await sample('p2p_dmabuf_move_notify_ack_seconds_bucket', { le: '10' })).to.equal(1);
    expect(await sample('p2p_dmabuf_revokes_total', { exporter: 'vfio-pci' })).to.equal(1);
    expect(await sample('p2p_dmabuf_fences_total')).to.equal(0);
  });

  it('p2p_dmabuf_fences_total: an importer silent past the deadline is fenced, and its wait is no ack', async () => {
    setUp(20);
    const { bufferId } = await attached(false);
    expect(await h.registry.move('vfio-pci', bufferId, { revoked: true })).to.deep.equal({ notified: 1, fenced: 1 });
    expect(await sample('p2p_dmabuf_fences_total')).to.equal(1);
    expect(await sample('p2p_dmabuf_move_notify_ack_seconds_count')).to.equal(0);
    expect(await sample('p2p_dmabuf_attachments')).to.equal(0);
  });

  it('p2p_dmabuf_revokes_total: counts revokes only, not the unrevoke after them', async () => {
    setUp();
    const { bufferId } = await attached(true);
    await h.registry.move('vfio-pci', bufferId, { revoked: true });
    await h.registry.move('vfio-pci', bufferId, { revoked: false });
    expect(await sample('p2p_dmabuf_revokes_total', { exporter: 'vfio-pci' })).to.equal(1);
    expect(await sample('p2p_dmabuf_move_notify_ack_seconds_count')).to.equal(2);
  });

  it('reads as a scraper sees it: each metric by name, with its labels', async () => {
    setUp();
    const { bufferId } = await attached(true);
    await h.registry.move('vfio-pci', bufferId, { revoked: true });
    const text = await metrics.metrics();
    expect(text).to.include('p2p_dmabuf_exports_total{exporter="vfio-pci"} 1');
    expect(text).to.include('p2p_dmabuf_revokes_total{exporter="vfio-pci"} 1');
    expect(text).to.include('p2p_dmabuf_buffers 1');
    expect(text).to.include('p2p_dmabuf_attachments 1');
    expect(text).to.include('p2p_dmabuf_move_notify_ack_seconds_bucket{le="0.0001"}');
    expect(text).to.include('p2p_dmabuf_move_notify_ack_seconds_count 1');
  });

  it('stops counting once unsubscribed', async () => {
    setUp();
    stop();
    h.owner.export(h.registry, h.registry.openProcess('spdk'));
    expect(await sample('p2p_dmabuf_exports_total', { exporter: 'vfio-pci' })).to.equal(0);
  });
});
