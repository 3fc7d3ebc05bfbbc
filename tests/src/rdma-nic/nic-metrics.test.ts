/**
 * Two NICs in one process, as `npm start` runs them: each serves its own
 * /metrics from its own registry, and every sample carries the NIC's BDF as
 * `nic`, so the two never collide when one Prometheus scrapes both.
 */
import * as fs from 'node:fs';
import * as http from 'node:http';
import { expect } from 'chai';
import { startDmabufRegistry } from '@p2p/dmabuf-registry';
import { startPciEmu } from '@p2p/pci-emu';
import { startRdmaNic } from '@p2p/rdma-nic';
import type { RunningServer } from '@p2p/server';
import { freePort, tempShmDir } from '@p2p/testing';
import { NIC0, NIC1 } from '../harness/rdma-hosts';

describe('rdma-nic metrics: two NICs in one process', function () {
  this.timeout(60_000);
  const servers: RunningServer[] = [];
  let shmDir: string;
  let nics: { bdf: string; server: RunningServer }[];

  before(async () => {
    shmDir = tempShmDir();
    const env = { P2P_SHM_DIR: shmDir, LOG_LEVEL: 'silent' };
    const pciEmu = await startPciEmu({ ...env, PCI_EMU_HOST: '127.0.0.1', PCI_EMU_PORT: '0', PCI_EMU_METRICS_PORT: '-1' });
    servers.push(pciEmu);
    const registry = await startDmabufRegistry({
      ...env,
      DMABUF_REGISTRY_HOST: '127.0.0.1',
      DMABUF_REGISTRY_PORT: '0',
      DMABUF_REGISTRY_METRICS_PORT: '-1',
      PCI_EMU_ADDRESS: `127.0.0.1:${pciEmu.port}`,
    });
    servers.push(registry);
    const wirePort = String(await freePort());
    nics = [];
    for (const [bdf, gid] of [[NIC0, '127.0.0.2'], [NIC1, '127.0.0.3']] as const) {
      const server = await startRdmaNic({
        ...env,
        RDMA_NIC_HOST: '127.0.0.1',
        RDMA_NIC_PORT: '0',
        RDMA_NIC_METRICS_PORT: '0',
        RDMA_NIC_BDF: bdf,
        RDMA_NIC_GID_ADDRESS: gid,
        RDMA_NIC_WIRE_PORT: wirePort,
        PCI_EMU_ADDRESS: `127.0.0.1:${pciEmu.port}`,
        DMABUF_REGISTRY_ADDRESS: `127.0.0.1:${registry.port}`,
      });
      servers.push(server);
      nics.push({ bdf, server });
    }
  });

  after(async () => {
    for (const server of servers.reverse()) await server.shutdown('test done');
    fs.rmSync(shmDir, { recursive: true, force: true });
  });

  it("labels every sample of each NIC's /metrics with its own BDF as nic", async () => {
    for (const { bdf, server } of nics) {
      const samples = (await scrape(server.metricsPort)).split('\n').filter((line) => line !== '' && !line.startsWith('#'));
      expect(samples.length, bdf).to.be.greaterThan(0);
      for (const sample of samples) expect(sample, bdf).to.include(`nic="${bdf}"`);
    }
  });

  it("serves each NIC's own wire metrics under its label", async () => {
    for (const { bdf, server } of nics) {
      const text = await scrape(server.metricsPort);
      expect(text, bdf).to.match(new RegExp(`^p2p_rdma_wire_packets_total\\{[^}]*nic="${bdf}"[^}]*\\} \\d+$`, 'm'));
      expect(text, bdf).to.match(new RegExp(`^p2p_rdma_wire_links_total\\{[^}]*nic="${bdf}"[^}]*\\} \\d+$`, 'm'));
    }
  });
});

/** GET /metrics, as Prometheus does. */
function scrape(port: number): Promise<string> {
  return new Promise((resolve, reject) => {
    http
      .get(`http://127.0.0.1:${port}/metrics`, (res) => {
        let body = '';
        res.on('data', (chunk: Buffer) => (body += chunk.toString()));
        res.on('end', () => resolve(body));
      })
      .on('error', reject);
  });
}
