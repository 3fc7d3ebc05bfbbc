import { execFileSync, spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { expect } from 'chai';
import { StatefulSet } from 'kubernetes-models/apps/v1/StatefulSet';
import { ConfigMap } from 'kubernetes-models/v1/ConfigMap';
import { Service } from 'kubernetes-models/v1/Service';
import { parseAllDocuments } from 'yaml';

const ROOT = path.resolve(__dirname, '../../..');
const OVERLAYS = path.join(ROOT, 'deploy/k8s/overlays');
const SERVICES = ['pci-emu', 'dmabuf-registry', 'vfio-pci', 'rdma-nic'];

/** A rendered object, as kubectl kustomize prints it. */
interface K8sObject {
  readonly apiVersion: string;
  readonly kind: string;
  readonly metadata: { readonly name: string; readonly labels?: Record<string, string> };
  readonly [field: string]: unknown;
}

/** The schema of each kind the manifests may hold (kubernetes-models' validators, offline). */
const MODELS: Record<string, new (data: never) => { validate(): void }> = {
  'apps/v1/StatefulSet': StatefulSet,
  'v1/Service': Service,
  'v1/ConfigMap': ConfigMap,
};

/** Every object valid against its kind's schema: the problems, one line each. */
function schemaProblems(objects: readonly K8sObject[]): string[] {
  const problems: string[] = [];
  for (const object of objects) {
    const Model = MODELS[`${object.apiVersion}/${object.kind}`];
    if (Model === undefined) {
      problems.push(`${object.kind} ${object.metadata?.name}: no schema for ${object.apiVersion} ${object.kind}`);
      continue;
    }
    try {
      new Model(object as never).validate();
    } catch (error) {
      problems.push(`${object.kind} ${object.metadata.name}: ${(error as Error).message}`);
    }
  }
  return problems;
}

function render(dir: string): K8sObject[] {
  const yaml = execFileSync('kubectl', ['kustomize', dir], { cwd: ROOT, encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] });
  return parseAllDocuments(yaml).map((document) => document.toJS() as K8sObject);
}

function kubectlMissing(): string | undefined {
  const probe = spawnSync('kubectl', ['kustomize', '--help'], { stdio: 'ignore' });
  if ((probe.error as NodeJS.ErrnoException | undefined)?.code === 'ENOENT') return 'kubectl is not installed (apt-get install kubectl)';
  return probe.status === 0 ? undefined : 'kubectl has no kustomize subcommand';
}

interface Container {
  readonly name: string;
  readonly env?: { name: string; value?: string }[];
  readonly volumeMounts?: { name: string; mountPath: string }[];
  readonly readinessProbe?: { grpc?: { port: number }; tcpSocket?: { port: number } };
  readonly livenessProbe?: { grpc?: { port: number }; tcpSocket?: { port: number } };
  readonly resources?: { requests?: Record<string, string>; limits?: Record<string, string> };
  readonly securityContext?: { readOnlyRootFilesystem?: boolean; allowPrivilegeEscalation?: boolean; capabilities?: { drop?: string[] } };
  readonly ports?: { name: string; containerPort: number }[];
}

interface PodSpec {
  readonly containers: Container[];
  readonly volumes: { name: string; emptyDir?: { medium?: string }; secret?: { secretName: string }; configMap?: { name: string } }[];
  readonly securityContext?: { runAsNonRoot?: boolean; runAsUser?: number };
}

function hosts(objects: readonly K8sObject[]): { replicas: number; serviceName: string; pod: PodSpec } {
  const set = objects.find((object) => object.kind === 'StatefulSet');
  expect(set, 'a StatefulSet of hosts').to.not.equal(undefined);
  const spec = set!.spec as { replicas: number; serviceName: string; template: { spec: PodSpec } };
  return { replicas: spec.replicas, serviceName: spec.serviceName, pod: spec.template.spec };
}

function env(container: Container, name: string): string | undefined {
  return container.env?.find((variable) => variable.name === name)?.value;
}

describe('Kubernetes manifests (deploy/k8s, rendered with kubectl kustomize, validated offline)', function () {
  this.timeout(60_000);
  const rendered = new Map<string, K8sObject[]>();
  const kustomizations = ['deploy/k8s/base', ...fs.readdirSync(OVERLAYS).map((overlay) => `deploy/k8s/overlays/${overlay}`)];

  before(function () {
    const why = kubectlMissing();
    if (why !== undefined) {
      console.log(`      skipped: ${why}`);
      this.skip();
    }
    for (const dir of kustomizations) rendered.set(dir, render(dir));
  });

  it('renders the base and every overlay (dev, multi-host, tls, observability), each object valid against the Kubernetes schemas', () => {
    expect(kustomizations.map((dir) => path.basename(dir)).sort()).to.deep.equal(['base', 'dev', 'multi-host', 'observability', 'tls']);
    for (const [dir, objects] of rendered) {
      expect(objects.length, dir).to.be.at.least(3);
      expect(schemaProblems(objects), dir).to.deep.equal([]);
    }
  });

  it('refuses a broken manifest: a field of the wrong type at any depth, a missing required field, a kind it has no schema for', () => {
    const [set] = rendered.get('deploy/k8s/base')!.filter((object) => object.kind === 'StatefulSet');
    const broken = { ...set!, spec: { ...(set!.spec as object), replicas: 'three' } };
    expect(schemaProblems([broken]).join('\n')).to.match(/replicas must be integer/);
    const deep = structuredClone(set!) as unknown as { spec: { template: { spec: PodSpec } } };
    (deep.spec.template.spec.containers[3]!.ports![0] as { containerPort: unknown }).containerPort = 'fifty thousand';
    expect(schemaProblems([deep as unknown as K8sObject]).join('\n')).to.match(/containers\/3\/ports\/0\/containerPort must be integer/);
    const noSelector = { ...set!, spec: { ...(set!.spec as object), selector: undefined } };
    expect(schemaProblems([noSelector]).join('\n')).to.match(/selector/);
    expect(schemaProblems([{ apiVersion: 'example.com/v1', kind: 'Widget', metadata: { name: 'w' } }])).to.deep.equal(['Widget w: no schema for example.com/v1 Widget']);
  });

  it('makes each pod one host: the four services sharing a memory-backed emptyDir, gRPC health probes, requests and limits, non-root on a read-only root filesystem', () => {
    const objects = rendered.get('deploy/k8s/base')!;
    const { pod, serviceName, replicas } = hosts(objects);
    expect(replicas).to.equal(2);
    expect(pod.containers.map((container) => container.name)).to.deep.equal(SERVICES);
    const shm = pod.volumes.find((volume) => volume.emptyDir?.medium === 'Memory');
    expect(shm, 'a memory-backed emptyDir').to.not.equal(undefined);
    expect(pod.securityContext).to.include({ runAsNonRoot: true, runAsUser: 1000 });
    for (const container of pod.containers) {
      const shmDir = env(container, 'P2P_SHM_DIR');
      expect(container.volumeMounts?.find((mount) => mount.name === shm!.name)?.mountPath, container.name).to.equal(shmDir);
      const grpcPort = container.ports![0]!.containerPort;
      expect(container.readinessProbe?.grpc?.port, container.name).to.equal(grpcPort);
      expect(container.livenessProbe?.grpc?.port, container.name).to.equal(grpcPort);
      expect(Object.keys(container.resources?.requests ?? {}), container.name).to.have.members(['cpu', 'memory']);
      expect(Object.keys(container.resources?.limits ?? {}), container.name).to.have.members(['cpu', 'memory']);
      expect(container.securityContext, container.name).to.deep.include({ readOnlyRootFilesystem: true, allowPrivilegeEscalation: false, capabilities: { drop: ['ALL'] } });
    }
    // The services of a host reach each other on the pod's loopback; the NIC's GID is the pod's IP.
    const nic = pod.containers.find((container) => container.name === 'rdma-nic')!;
    expect(env(nic, 'RDMA_NIC_GID_ADDRESS')).to.equal('auto');
    // Payloads between hosts take the bulk stream, on a port the pod declares and the Service names.
    expect(env(nic, 'RDMA_NIC_BULK_PORT')).to.equal('4792');
    expect(nic.ports?.find((port) => port.name === 'rdma-bulk')?.containerPort).to.equal(4792);
    expect(env(nic, 'DMABUF_REGISTRY_ADDRESS')).to.equal('127.0.0.1:50053');
    // The headless Service names each host, wire port included.
    const service = objects.find((object) => object.kind === 'Service' && object.metadata.name === serviceName);
    const spec = service?.spec as { clusterIP: string; ports: { name: string; port: number }[] } | undefined;
    expect(spec?.clusterIP).to.equal('None');
    expect(spec?.ports.map((port) => port.port)).to.include.members([4791, 4792]);
    // pci-emu reads the host's topology from the generated ConfigMap.
    const topology = pod.volumes.find((volume) => volume.configMap !== undefined)!.configMap!.name;
    expect(objects.some((object) => object.kind === 'ConfigMap' && object.metadata.name === topology)).to.equal(true);
    expect(env(pod.containers[0]!, 'PCI_EMU_TOPOLOGY')).to.equal('/etc/p2p/topology/topology.yaml');
  });

  it('runs three hosts spread over the nodes in multi-host, and one in dev', () => {
    const multi = hosts(rendered.get('deploy/k8s/overlays/multi-host')!);
    expect(multi.replicas).to.equal(3);
    expect((multi.pod as unknown as { topologySpreadConstraints: { topologyKey: string }[] }).topologySpreadConstraints[0]!.topologyKey).to.equal('kubernetes.io/hostname');
    expect(hosts(rendered.get('deploy/k8s/overlays/dev')!).replicas).to.equal(1);
  });

  it('gives every container the TLS secret and P2P_TLS_* in the tls overlay, with TCP probes the plaintext kubelet can make', () => {
    const { pod } = hosts(rendered.get('deploy/k8s/overlays/tls')!);
    expect(pod.containers.map((container) => container.name)).to.deep.equal(SERVICES);
    const tls = pod.volumes.find((volume) => volume.secret?.secretName === 'p2p-tls');
    expect(tls, 'the p2p-tls Secret as a volume').to.not.equal(undefined);
    for (const container of pod.containers) {
      const dir = container.volumeMounts?.find((mount) => mount.name === tls!.name)?.mountPath;
      expect(dir, container.name).to.equal('/etc/p2p/tls');
      expect([env(container, 'P2P_TLS_CA'), env(container, 'P2P_TLS_CERT'), env(container, 'P2P_TLS_KEY')], container.name).to.deep.equal([`${dir}/ca.crt`, `${dir}/service.crt`, `${dir}/service.key`]);
      expect(container.readinessProbe, container.name).to.deep.equal({ tcpSocket: { port: container.ports![0]!.containerPort }, periodSeconds: 5, failureThreshold: 3 });
    }
  });

  it('ships the Prometheus scrape configuration and the compose dashboard in observability', () => {
    const objects = rendered.get('deploy/k8s/overlays/observability')!;
    const configMap = (prefix: string): { data: Record<string, string>; metadata: { labels?: Record<string, string> } } =>
      objects.find((object) => object.kind === 'ConfigMap' && object.metadata.name.startsWith(prefix)) as never;
    const scrape = configMap('p2p-prometheus-').data['prometheus.yml']!;
    expect(scrape).to.include('kubernetes_sd_configs').and.include('.*-metrics');
    // Every container's metrics port has a name the scrape configuration keeps.
    for (const container of hosts(objects).pod.containers) expect(container.ports!.some((port) => /-metrics$/.test(port.name)), container.name).to.equal(true);
    const dashboards = configMap('p2p-grafana-dashboards-');
    expect(dashboards.metadata.labels?.grafana_dashboard).to.equal('1');
    const dashboard = fs.readFileSync(path.join(ROOT, 'deploy/monitoring/grafana/provisioning/dashboards/p2p-dmabuf.json'), 'utf8');
    expect(dashboards.data['p2p-dmabuf.json']).to.equal(dashboard);
  });
});
