/**
 * docker-compose.yml's monitoring profile, checked without its images (no
 * registry here): Prometheus scrapes every service's metrics port by its
 * compose name, Grafana's datasource is the one every panel names, and every
 * metric a panel queries is one the services expose, as scraped from the
 * stack running as processes.
 */
import * as fs from 'node:fs';
import * as http from 'node:http';
import * as path from 'node:path';
import { expect } from 'chai';
import { parse as parseYaml } from 'yaml';
import type { ServiceProcess } from '@p2p/testing';
import { RdmaStack } from '../harness/rdma-hosts';

const ROOT = path.resolve(__dirname, '..', '..', '..');
const MONITORING = path.join(ROOT, 'deploy', 'monitoring');
const PROVISIONING = path.join(MONITORING, 'grafana', 'provisioning');
const DASHBOARD = path.join(PROVISIONING, 'dashboards', 'p2p-dmabuf.json');
const MONITORING_SERVICES = ['prometheus', 'grafana'];

interface ComposeService {
  readonly profiles?: string[];
  readonly environment?: Record<string, string>;
  readonly ports?: string[];
  readonly volumes?: string[];
}

interface PrometheusConfig {
  readonly scrape_configs: { job_name: string; metrics_path?: string; static_configs: { targets: string[] }[] }[];
}

interface Panel {
  readonly id: number;
  readonly type: string;
  readonly title: string;
  readonly datasource?: { uid: string };
  readonly targets?: { expr: string; datasource?: { uid: string } }[];
}

const readYaml = <T>(file: string): T => parseYaml(fs.readFileSync(file, 'utf8')) as T;
const compose = readYaml<{ services: Record<string, ComposeService> }>(path.join(ROOT, 'docker-compose.yml')).services;
const prometheus = readYaml<PrometheusConfig>(path.join(MONITORING, 'prometheus.yml'));
const dashboard = JSON.parse(fs.readFileSync(DASHBOARD, 'utf8')) as { uid: string; panels: Panel[] };
const queryPanels = dashboard.panels.filter((panel) => panel.type !== 'row');
const appServices = Object.keys(compose).filter((name) => !MONITORING_SERVICES.includes(name));

/** The container port a service serves /metrics on: its <PREFIX>_METRICS_PORT. */
function composeMetricsPort(service: ComposeService): string | undefined {
  return Object.entries(service.environment ?? {}).find(([name]) => name.endsWith('_METRICS_PORT'))?.[1];
}

/** Metric names an expression queries: every p2p_* and grpc_server_* name, histogram suffixes dropped. */
function metricNames(expr: string): string[] {
  return [...expr.matchAll(/\b(?:p2p|grpc_server)_[a-z0-9_]+/g)].map(([name]) => name.replace(/_(bucket|sum|count)$/, ''));
}

describe('monitoring profile: docker-compose.yml and deploy/monitoring', () => {
  it('puts prometheus and grafana in the monitoring profile only, with pinned image tags', () => {
    for (const name of MONITORING_SERVICES) {
      const service = compose[name] as ComposeService & { image: string };
      expect(service.profiles, name).to.deep.equal(['monitoring']);
      expect(service.image, name).to.match(/^(prom\/prometheus|grafana\/grafana):v?\d+\.\d+\.\d+$/);
    }
    for (const name of appServices) expect(compose[name]!.profiles, name).to.equal(undefined);
  });

  it('mounts the files it provisions, from this repository', () => {
    expect(compose['prometheus']!.volumes).to.include('./deploy/monitoring/prometheus.yml:/etc/prometheus/prometheus.yml:ro');
    expect(compose['grafana']!.volumes).to.include('./deploy/monitoring/grafana/provisioning:/etc/grafana/provisioning:ro');
  });

  it("scrapes each service's metrics port by its compose name, and every service", () => {
    const targets = prometheus.scrape_configs.flatMap((job) => {
      expect(job.metrics_path ?? '/metrics', job.job_name).to.equal('/metrics');
      return job.static_configs.flatMap((config) => config.targets);
    });
    for (const target of targets) {
      const [host = '', port] = target.split(':');
      expect(appServices, target).to.include(host);
      const service = compose[host]!;
      expect(composeMetricsPort(service), target).to.equal(port);
      expect((service.ports ?? []).some((mapping) => mapping.endsWith(`:${port}`)), `${target} is published`).to.equal(true);
    }
    expect(targets.map((target) => target.split(':')[0]).sort()).to.deep.equal([...appServices].sort());
  });

  it("provisions the datasource every panel queries, at the profile's prometheus", () => {
    const { datasources } = readYaml<{ datasources: { uid: string; url: string; type: string }[] }>(path.join(PROVISIONING, 'datasources', 'prometheus.yml'));
    expect(datasources).to.have.length(1);
    expect(datasources[0]).to.include({ type: 'prometheus', url: 'http://prometheus:9090' });
    for (const panel of queryPanels) {
      expect(panel.datasource?.uid, panel.title).to.equal(datasources[0]!.uid);
      for (const target of panel.targets ?? []) expect(target.datasource?.uid, panel.title).to.equal(datasources[0]!.uid);
    }
  });

  it('loads the dashboards from the directory the dashboard JSON is in', () => {
    const { providers } = readYaml<{ providers: { type: string; options: { path: string } }[] }>(path.join(PROVISIONING, 'dashboards', 'p2p-dmabuf.yml'));
    expect(providers.map((provider) => provider.options.path)).to.deep.equal(['/etc/grafana/provisioning/dashboards']);
  });

  it('gives every panel a unique id and at least one query', () => {
    const ids = dashboard.panels.map((panel) => panel.id);
    expect(new Set(ids).size).to.equal(ids.length);
    for (const panel of queryPanels) expect(panel.targets?.length ?? 0, panel.title).to.be.greaterThan(0);
  });

  it('shows the domain metrics of every service', () => {
    const queried = new Set(queryPanels.flatMap((panel) => (panel.targets ?? []).flatMap((target) => metricNames(target.expr))));
    for (const name of [
      'p2p_dmabuf_buffers',
      'p2p_dmabuf_attachments',
      'p2p_dmabuf_move_notify_ack_seconds',
      'p2p_dmabuf_fences_total',
      'p2p_vfio_dmabuf_revokes_total',
      'p2p_pci_mmio_accesses_total',
      'p2p_pci_resets_total',
      'p2p_pci_power_transitions_total',
      'p2p_nvme_commands_total',
      'p2p_nvme_doorbell_writes_total',
      'p2p_rdma_wire_payload_bytes_total',
    ]) {
      expect([...queried], name).to.include(name);
    }
  });

  describe('against the running services', function () {
    this.timeout(120_000);
    let stack: RdmaStack;
    /** Each service's /metrics text, by compose service name. */
    const scraped = new Map<string, string>();

    before(async () => {
      // At info, each service logs the metrics port it bound (0 picks one).
      stack = await RdmaStack.start({ env: { LOG_LEVEL: 'info' } });
      const services: [string, ServiceProcess][] = [
        ['pci-emu', stack.pciEmu],
        ['dmabuf-registry', stack.registry],
        ['vfio-pci', stack.vfioPci],
        ['rdma-nic-a', stack.nics[0].process],
        ['rdma-nic-b', stack.nics[1].process],
      ];
      for (const [name, service] of services) scraped.set(name, await scrape(loggedMetricsPort(service)));
    });

    after(async () => {
      await stack?.stop();
    });

    it('exposes every metric a panel queries', () => {
      const exposed = new Set([...scraped.values()].flatMap((text) => [...text.matchAll(/^# TYPE (\S+) /gm)].map(([, name]) => name!)));
      for (const panel of queryPanels) {
        for (const target of panel.targets ?? []) {
          for (const name of metricNames(target.expr)) expect([...exposed], `${panel.title}: ${name}`).to.include(name);
        }
      }
    });

    it("labels every sample of each NIC with its own BDF as nic", () => {
      for (const [name, nic] of [['rdma-nic-a', stack.nics[0]], ['rdma-nic-b', stack.nics[1]]] as const) {
        const samples = scraped.get(name)!.split('\n').filter((line) => line !== '' && !line.startsWith('#'));
        expect(samples.length, name).to.be.greaterThan(0);
        for (const sample of samples) expect(sample, name).to.include(`nic="${nic.bdf}"`);
      }
    });
  });
});

/** The metrics port a service process logged when it started serving. */
function loggedMetricsPort(service: ServiceProcess): number {
  for (const line of service.logs) {
    try {
      const entry = JSON.parse(line) as { metricsPort?: unknown };
      if (typeof entry.metricsPort === 'number') return entry.metricsPort;
    } catch {
      // stderr or a partial line: not a log entry
    }
  }
  throw new Error(`no metricsPort in the logs:\n${service.logs.join('\n')}`);
}

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
