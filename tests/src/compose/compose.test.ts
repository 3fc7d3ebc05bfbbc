/**
 * docker-compose.yml end to end: builds the services image (deploy/Dockerfile)
 * from the built workspace, brings the stack up through testcontainers'
 * DockerComposeEnvironment, and talks gRPC to the published ports.
 *
 * Needs a Docker engine and docker compose (v2 plugin or the v1 docker-compose
 * binary); without an engine the suite skips with a message. Base image: the
 * BASE_IMAGE environment variable if set; else node:20-bookworm-slim if it is
 * already present; else the local p2p-dmabuf/node-base:20, built from this
 * machine's node by deploy/scripts/build-base-image.sh when missing. So the test
 * never needs a registry.
 */
import * as fs from 'node:fs';
import * as http from 'node:http';
import * as os from 'node:os';
import * as path from 'node:path';
import { expect } from 'chai';
import { credentials, loadPackageDefinition, Metadata } from '@grpc/grpc-js';
import type { CallOptions, Client, ServiceClientConstructor, ServiceError } from '@grpc/grpc-js';
import { loadSync } from '@grpc/proto-loader';
import { protoPath as healthProtoPath } from 'grpc-health-check';
import { bearerInterceptor, channelCredentials, loadTlsConfig, newToken, type TlsConfig } from '@p2p/auth';
import { RegistrySession } from '@p2p/dmabuf-client';
import { dmabuf, pci, vfio } from '@p2p/proto';
import { DockerComposeEnvironment, Wait } from 'testcontainers';
import { iommufdP2p } from '../examples/iommufd-p2p';
import { readAccelBar } from '../examples/read-accel-bar';
import { baseImage, dockerUnavailable, repoRoot, run, type RunResult } from '../harness/docker';
import { rpc } from '../harness/rpc';
import type { StartedDockerComposeEnvironment, StartedTestContainer } from 'testcontainers';

// Ryuk, testcontainers' reaper, is an image from Docker Hub: none here. The
// after hook downs the project (containers, network and volume) instead.
process.env.TESTCONTAINERS_RYUK_DISABLED ??= 'true';

/** The compose services this suite starts (depends_on brings their dependencies). */
const SERVICES = ['pci-emu', 'dmabuf-registry', 'vfio-pci', 'rdma-nic-a', 'rdma-nic-b'];
const RDMA_NIC_GRPC_PORT = 50054;
const VFIO_GRPC_PORT = 50052;
const REGISTRY_GRPC_PORT = 50053;
const PCI_EMU_GRPC_PORT = 50051;
const PCI_EMU_METRICS_PORT = 9451;
/** docker-compose.yml's image and the shared volume's mount point in every service. */
const SERVICES_IMAGE = 'p2p-dmabuf/services:dev';
const SERVICES_SHM_DIR = '/dev/shm/p2p-dmabuf';

type ComposeExecutable = NonNullable<Parameters<DockerComposeEnvironment['withClientOptions']>[0]['executable']>;

/** docker compose v2 when present (testcontainers' default), else the standalone v1 binary. */
async function composeExecutable(): Promise<{ executable?: ComposeExecutable; version: string } | undefined> {
  const v2 = await run('docker', ['compose', 'version', '--short'], 15_000);
  if (v2.ok) return { version: `docker compose ${v2.stdout.trim()}` };
  const v1 = await run('docker-compose', ['version', '--short'], 15_000);
  if (v1.ok) return { executable: { standalone: true, executablePath: 'docker-compose' }, version: `docker-compose ${v1.stdout.trim()}` };
  return undefined;
}

/** docker compose v2 names containers `<project>-<svc>-1`, v1 `<project>_<svc>_1`. */
function serviceContainer(env: StartedDockerComposeEnvironment, service: string): StartedTestContainer {
  for (const name of [`${service}-1`, `${service}_1`]) {
    try {
      return env.getContainer(name);
    } catch {
      // try the other naming scheme
    }
  }
  throw new Error(`no running container for compose service ${service}`);
}

/**
 * Runs `node tests/dist/examples/<example>.js` beside the services, as the
 * README does: a container of the services image in `beside`'s network
 * namespace (so compose's service names resolve) with its volumes (the shared
 * tmpfs at P2P_SHM_DIR). The NVMe examples keep their queues in the process's
 * own DMA memory, which only a process on the shared tmpfs can map. tests/ is
 * not in the image: the built examples are mounted read-only.
 */
async function runExampleInStack(root: string, beside: StartedTestContainer, example: string, env: Record<string, string>): Promise<RunResult> {
  // Named, so that a run the timeout cuts short is removed too: a container
  // left in the namespace would keep the project's `down` from finishing.
  const name = `${beside.getName().replace(/^\//, '')}-${example}-${process.pid}`;
  const environment = Object.entries({ ...env, P2P_SHM_DIR: SERVICES_SHM_DIR }).flatMap(([key, value]) => ['-e', `${key}=${value}`]);
  const result = await run(
    'docker',
    [
      ...['run', '--rm', '--name', name, '--network', `container:${beside.getId()}`, '--volumes-from', beside.getId()],
      ...['-v', `${path.join(root, 'tests/dist')}:/app/tests/dist:ro`, ...environment],
      ...[SERVICES_IMAGE, 'node', `tests/dist/examples/${example}.js`],
    ],
    180_000,
  );
  if (!result.ok) await run('docker', ['rm', '-f', name], 30_000);
  return result;
}

function deadline(ms: number): CallOptions {
  return { deadline: Date.now() + ms };
}

function waitForReady(client: Client, ms: number): Promise<void> {
  return new Promise((resolve, reject) => client.waitForReady(Date.now() + ms, (error) => (error ? reject(error) : resolve())));
}

interface HealthCheckResponse {
  status: string;
}
interface HealthClient extends Client {
  Check(
    request: { service: string },
    metadata: Metadata,
    options: CallOptions,
    callback: (error: ServiceError | null, response?: HealthCheckResponse) => void,
  ): void;
}

function healthClient(address: string): HealthClient {
  const definition = loadSync(healthProtoPath, { keepCase: true, enums: String, longs: String, defaults: true });
  const loaded = loadPackageDefinition(definition) as unknown as {
    grpc: { health: { v1: { Health: ServiceClientConstructor } } };
  };
  return new loaded.grpc.health.v1.Health(address, credentials.createInsecure()) as unknown as HealthClient;
}

function check(client: HealthClient, service: string): Promise<string> {
  return new Promise((resolve, reject) =>
    client.Check({ service }, new Metadata(), deadline(10_000), (error, response) =>
      error || !response ? reject(error ?? new Error('empty response')) : resolve(response.status),
    ),
  );
}

function listFunctions(client: pci.PciEmuServiceClient): Promise<pci.FunctionInfo[]> {
  return new Promise((resolve, reject) =>
    client.listFunctions({}, new Metadata(), deadline(10_000), (error, response) =>
      error || !response ? reject(error ?? new Error('empty response')) : resolve(response.functions),
    ),
  );
}

function httpStatus(url: string): Promise<{ status: number; body: string }> {
  return new Promise((resolve, reject) => {
    http
      .get(url, (res) => {
        let body = '';
        res.setEncoding('utf8');
        res.on('data', (chunk: string) => (body += chunk));
        res.on('end', () => resolve({ status: res.statusCode ?? 0, body }));
      })
      .on('error', reject);
  });
}

/** One row of `p2p --json chaos`: a fault kind at a service, what the workload did under it, and its recovery. */
interface ChaosRow {
  kind: string;
  service: string;
  faults: number;
  violations: number;
  recoveryP50Ms?: number;
}

/** The compose project a container belongs to, as compose labelled it (testcontainers names its own). */
async function composeProjectOf(container: StartedTestContainer): Promise<string> {
  const labels = await run('docker', ['inspect', '-f', '{{index .Config.Labels "com.docker.compose.project"}}', container.getId()], 15_000);
  if (!labels.ok || labels.stdout.trim() === '') throw new Error(`no compose project label on ${container.getName()}: ${labels.stderr}`);
  return labels.stdout.trim();
}

describe('docker-compose.yml: pci-emu, dmabuf-registry, vfio-pci and two rdma-nic containers', function () {
  // The first run builds the image; compose v1 also recreates the network.
  this.timeout(240_000);

  let env: StartedDockerComposeEnvironment | undefined;
  const secrets = { adminToken: newToken(), platformToken: newToken() };
  let container: StartedTestContainer;
  let grpcAddress: string;
  let registryAddress: string;
  let vfioAddress: string;
  let nicAddresses: [string, string];
  let health: HealthClient | undefined;
  let pciClient: pci.PciEmuServiceClient | undefined;

  before(async function () {
    const unavailable = await dockerUnavailable();
    if (unavailable !== undefined) {
      console.warn(`      ${unavailable}: compose test skipped`);
      this.skip();
    }
    const compose = await composeExecutable();
    if (compose === undefined) {
      console.warn('      neither `docker compose` (v2) nor `docker-compose` (v1) is installed: compose test skipped');
      this.skip();
    }
    const root = repoRoot();
    const base = await baseImage(root);

    let environment = new DockerComposeEnvironment(root, 'docker-compose.yml')
      .withBuild()
      .withEnvironment({
        BASE_IMAGE: base,
        // Host port 0: Docker picks free ports, so a stack already running on
        // 50051/9451 does not clash with this one.
        PCI_EMU_PORT: '0',
        PCI_EMU_METRICS_PORT: '0',
        DMABUF_REGISTRY_PORT: '0',
        DMABUF_REGISTRY_METRICS_PORT: '0',
        VFIO_PCI_PORT: '0',
        VFIO_PCI_METRICS_PORT: '0',
        RDMA_NIC_A_PORT: '0',
        RDMA_NIC_A_METRICS_PORT: '0',
        RDMA_NIC_B_PORT: '0',
        RDMA_NIC_B_METRICS_PORT: '0',
        // The platform's secrets, chosen here: this process lives outside the containers' volume.
        P2P_ADMIN_TOKEN: secrets.adminToken,
        P2P_PLATFORM_TOKEN: secrets.platformToken,
      })
      // The image has no shell tools for the default listening-ports probe; the
      // compose healthcheck (the Prometheus endpoint) says when it is up.
      .withDefaultWaitStrategy(Wait.forHealthCheck())
      .withStartupTimeout(120_000);
    if (compose.executable !== undefined) environment = environment.withClientOptions({ executable: compose.executable });

    const started = Date.now();
    try {
      env = await environment.up(SERVICES);
    } catch (error) {
      throw new Error(
        `compose up with ${compose.version} and BASE_IMAGE=${base} failed (run with DEBUG=testcontainers* for the compose and container logs): ${
          error instanceof Error ? error.message : String(error)
        }`,
      );
    }
    console.log(`      compose up (${compose.version}, build included, BASE_IMAGE=${base}): ${((Date.now() - started) / 1000).toFixed(1)} s`);

    container = serviceContainer(env, 'pci-emu');
    grpcAddress = `${container.getHost()}:${container.getMappedPort(PCI_EMU_GRPC_PORT)}`;
    const registry = serviceContainer(env, 'dmabuf-registry');
    registryAddress = `${registry.getHost()}:${registry.getMappedPort(REGISTRY_GRPC_PORT)}`;
    const vfioPci = serviceContainer(env, 'vfio-pci');
    vfioAddress = `${vfioPci.getHost()}:${vfioPci.getMappedPort(VFIO_GRPC_PORT)}`;
    const nic = (service: string): string => {
      const c = serviceContainer(env!, service);
      return `${c.getHost()}:${c.getMappedPort(RDMA_NIC_GRPC_PORT)}`;
    };
    nicAddresses = [nic('rdma-nic-a'), nic('rdma-nic-b')];
  });

  after(async function () {
    this.timeout(120_000);
    health?.close();
    pciClient?.close();
    await env?.down();
  });

  it('answers grpc.health.v1.Health/Check with SERVING', async function () {
    health = healthClient(grpcAddress);
    await waitForReady(health, 20_000);
    expect(await check(health, '')).to.equal('SERVING');
    expect(await check(health, 'p2p.pci.v1.PciEmuService')).to.equal('SERVING');
  });

  it('lists the default topology: 2 NVMe, 1 accelerator and 2 NICs', async function () {
    pciClient = new pci.PciEmuServiceClient(grpcAddress, credentials.createInsecure(), { interceptors: [bearerInterceptor(secrets.adminToken)] });
    await waitForReady(pciClient, 20_000);
    const functions = await listFunctions(pciClient);

    expect(functions).to.have.lengthOf(5);
    const count = (kind: pci.FunctionKind): number => functions.filter((f) => f.kind === kind).length;
    expect(count(pci.FunctionKind.FUNCTION_KIND_NVME)).to.equal(2);
    expect(count(pci.FunctionKind.FUNCTION_KIND_ACCEL)).to.equal(1);
    expect(count(pci.FunctionKind.FUNCTION_KIND_NIC)).to.equal(2);
    for (const f of functions) expect(f.bdf).to.match(/^[0-9a-f]{4}:[0-9a-f]{2}:[0-9a-f]{2}\.[0-7]$/i);
    expect(new Set(functions.map((f) => f.bdf)).size).to.equal(5);
  });

  it('serves dma-bufs to a process outside the containers through the streamed fallback', async function () {
    // This process shares no tmpfs with the registry's containers: its own
    // segment directory has another identity, so maps offer TRANSPORT_STREAM.
    const localShm = fs.mkdtempSync(path.join(fs.existsSync('/dev/shm') ? '/dev/shm' : os.tmpdir(), 'p2p-compose-'));
    const session = await RegistrySession.open(registryAddress, { name: 'compose-test', shmDir: localShm });
    const debugfs = new dmabuf.DmaBufRegistryServiceClient(registryAddress, credentials.createInsecure(), { interceptors: [bearerInterceptor(secrets.adminToken)] });
    try {
      const { fd } = await session.heapAllocate(8192);
      await session.cpuWrite(fd, 4096, Buffer.from('written by the CPU'));
      const importer = await session.importDmaBuf({ fd, importerBdf: '' });
      const mapping = await importer.map();
      expect(mapping.transport).to.equal(dmabuf.Transport.TRANSPORT_STREAM);
      expect((await importer.read(4096, 18)).toString()).to.equal('written by the CPU');
      await importer.write(0, Buffer.from('written by the importer'));
      expect((await session.cpuRead(fd, 0, 23)).toString()).to.equal('written by the importer');
      await importer.detach();
      await session.closeFd(fd);
      expect((await rpc<dmabuf.GetBufInfoResponse>((cb) => debugfs.getBufInfo({}, cb))).buffers).to.deep.equal([]);
    } finally {
      debugfs.close();
      await session.close();
      fs.rmSync(localShm, { recursive: true, force: true });
    }
  });

  it('exports an accelerator BAR range through vfio-pci in its container, revoked by a MEM-clear config write', async function () {
    const localShm = fs.mkdtempSync(path.join(os.tmpdir(), 'p2p-compose-'));
    const session = await RegistrySession.open(registryAddress, { name: 'compose-spdk', shmDir: localShm, privilegedCredential: secrets.adminToken });
    const vfioClient = new vfio.VfioPciServiceClient(vfioAddress, credentials.createInsecure(), { interceptors: [bearerInterceptor(secrets.adminToken)] });
    const call = <T>(start: (cb: (error: ServiceError | null, response: T) => void) => unknown): Promise<T> =>
      new Promise((resolve, reject) => start((error, response) => (error ? reject(error) : resolve(response))));
    try {
      await call((cb) => vfioClient.bind({ bdf: '0000:07:00.0', variants: undefined }, cb));
      const { fd: deviceFd } = await call<vfio.OpenDeviceResponse>((cb) => vfioClient.openDevice({ pid: session.pid, bdf: '0000:07:00.0' }, cb));
      const { fd } = await call<vfio.DeviceFeatureResponse>((cb) =>
        vfioClient.deviceFeature(
          { pid: session.pid, deviceFd, argsz: 0, flags: (1 << 16) | 11, payload: { $case: 'dmaBuf', value: { regionIndex: 2, openFlags: 2, flags: 0, dmaRanges: [{ offset: 0n, length: 65536n }] } } },
          cb,
        ),
      );
      const exported = (await session.bufInfo()).find((b) => b.exporter === 'vfio-pci');
      expect(exported?.size).to.equal(65536n);
      expect(exported?.revoked).to.equal(false);
      await call((cb) => vfioClient.regionWrite({ pid: session.pid, deviceFd, index: 7, offset: 4n, data: Buffer.from([0, 0]) }, cb));
      expect((await session.bufInfo()).find((b) => b.bufferId === exported!.bufferId)?.revoked).to.equal(true);
      await session.closeFd(fd);
      await session.closeFd(deviceFd);
      await call((cb) => vfioClient.unbind({ bdf: '0000:07:00.0' }, cb));
    } finally {
      vfioClient.close();
      await session.close();
      fs.rmSync(localShm, { recursive: true, force: true });
    }
  });

  it("runs the README example: host Y's NIC reads accel0's BAR through host X's NIC, container to container", async function () {
    // This process only makes calls: the NICs map the memory, in their containers, over the shared tmpfs.
    const localShm = fs.mkdtempSync(path.join(os.tmpdir(), 'p2p-compose-'));
    try {
      const { received, expected } = await readAccelBar({
        registry: registryAddress,
        vfioPci: vfioAddress,
        nicY: nicAddresses[0],
        nicX: nicAddresses[1],
        shmDir: localShm,
        adminToken: secrets.adminToken,
        length: 256 * 1024,
      });
      expect(received.equals(expected)).to.equal(true);
    } finally {
      fs.rmSync(localShm, { recursive: true, force: true });
    }
  });

  it("runs the DMA-mapping example: accel0 copies a process's heap buffer into nvme1's CMB through vfio-pci's iommufd, container to container", async function () {
    // vfio-pci pins the pages at the registry, pci-emu's IOMMU maps them: three containers over the shared tmpfs.
    const localShm = fs.mkdtempSync(path.join(os.tmpdir(), 'p2p-compose-'));
    try {
      const { expected, copied, transfer, afterRevoke } = await iommufdP2p({ registry: registryAddress, vfioPci: vfioAddress, shmDir: localShm, adminToken: secrets.adminToken });
      expect(transfer.error).to.equal('NONE');
      expect(copied.equals(expected)).to.equal(true);
      expect(afterRevoke.error).to.equal('IOMMU_FAULT_WRITE');
    } finally {
      fs.rmSync(localShm, { recursive: true, force: true });
    }
  });

  describe('the NVMe examples, in a container beside the services on the shared tmpfs', function () {
    // The services' own addresses on the compose network, as a process beside them reaches them.
    const inStack = (): Record<string, string> => ({
      DMABUF_REGISTRY_ADDRESS: `dmabuf-registry:${REGISTRY_GRPC_PORT}`,
      VFIO_PCI_ADDRESS: `vfio-pci:${VFIO_GRPC_PORT}`,
      RDMA_NIC_A_ADDRESS: `rdma-nic-a:${RDMA_NIC_GRPC_PORT}`,
      RDMA_NIC_B_ADDRESS: `rdma-nic-b:${RDMA_NIC_GRPC_PORT}`,
      // This suite gives the services their tokens: none is on the volume.
      P2P_ADMIN_TOKEN: secrets.adminToken,
    });

    it("runs SPDK's cmb_copy: nvme0 -> nvme1 through nvme1's CMB, a process owning both through vfio-pci", async function () {
      const result = await runExampleInStack(repoRoot(), container, 'spdk-cmb-copy', inStack());
      expect(result.ok, `${result.stdout}\n${result.stderr}`).to.equal(true);
      expect(result.stdout.trim().split('\n').at(-1)).to.match(/bytes copied from nvme0 to nvme1 through nvme1's CMB: identical$/);
    });

    it("runs the seed's flow: host Y drives nvme1 by RDMA alone (data, SQE and doorbell into nvme1's BARs through host X's NIC)", async function () {
      const result = await runExampleInStack(repoRoot(), container, 'rdma-nvme-doorbell', inStack());
      expect(result.ok, `${result.stdout}\n${result.stderr}`).to.equal(true);
      expect(result.stdout).to.match(/^host X made 0 calls while host Y drove nvme1$/m);
      expect(result.stdout.trim().split('\n').at(-1)).to.match(/read back by host Y through RDMA alone: identical$/);
    });
  });

  it('publishes Prometheus metrics', async function () {
    const url = `http://${container.getHost()}:${container.getMappedPort(PCI_EMU_METRICS_PORT)}/metrics`;
    const { status, body } = await httpStatus(url);
    expect(status).to.equal(200);
    expect(body).to.match(/^# (HELP|TYPE) /m);
  });

  it('mounts the shared tmpfs at P2P_SHM_DIR, writable by the service user', async function () {
    const probe = [
      "const fs = require('fs');",
      "const dir = process.env.P2P_SHM_DIR;",
      "const mount = fs.readFileSync('/proc/mounts', 'utf8').split('\\n').find((l) => l.split(' ')[1] === dir);",
      "fs.writeFileSync(dir + '/.compose-test', 'x'); fs.unlinkSync(dir + '/.compose-test');",
      'console.log(JSON.stringify({ dir, fstype: mount ? mount.split(" ")[2] : null, uid: process.getuid(), owner: fs.statSync(dir).uid }));',
    ].join(' ');
    const result = await container.exec(['node', '-e', probe]);
    expect(result.exitCode, result.output).to.equal(0);
    const seen = JSON.parse(result.stdout.trim()) as { dir: string; fstype: string | null; uid: number; owner: number };
    expect(seen.dir).to.equal('/dev/shm/p2p-dmabuf');
    expect(seen.fstype).to.equal('tmpfs');
    expect(seen.uid).to.equal(1000);
    expect(seen.owner).to.equal(1000);
  });

  // Last, after the nested NVMe examples too: it kills, freezes and cuts off every container, so published ports move.
  describe('a chaos campaign against the stack', function () {
    it('survives a seeded chaos campaign run from the host (p2p chaos --driver compose): every fault kind, each healed with a recovery time, no violation', async function () {
      this.timeout(100_000);
      const root = repoRoot();
      const out = fs.mkdtempSync(path.join(os.tmpdir(), 'p2p-compose-chaos-'));
      const project = await composeProjectOf(container);
      try {
        const history = path.join(out, 'history.jsonl');
        const campaign = await run(
          process.execPath,
          [
            ...[path.join(root, 'packages/cli/bin/p2p.js'), '--json', 'chaos', '--driver', 'compose'],
            ...['--compose-file', path.join(root, 'docker-compose.yml'), '--compose-project', project],
            ...['--seed', '11', '--duration', '30s', '--interval', '2500ms', '--fault-duration', '500ms', '--history', history],
          ],
          90_000,
          root,
          { P2P_ADMIN_TOKEN: secrets.adminToken },
        );
        expect(campaign.ok, `${campaign.stdout}\n${campaign.stderr}`).to.equal(true);
        const result = JSON.parse(campaign.stdout) as { valid: boolean; violations: unknown[]; rows: ChaosRow[] };
        expect(result.violations).to.deep.equal([]);
        const faulted = result.rows.filter((row) => row.faults > 0);
        expect(new Set(faulted.map((row) => row.kind))).to.deep.equal(new Set(['kill', 'stop', 'partition', 'device']));
        for (const row of faulted) expect(row.recoveryP50Ms, `${row.kind} ${row.service}: no recovery`).to.be.a('number');
        const ops = fs
          .readFileSync(history, 'utf8')
          .trim()
          .split('\n')
          .map((line) => JSON.parse(line) as { process: string; type: string; f: string; error?: string });
        // Every workload ran, the DMA and NVMe workers through the registry's copies (no shared tmpfs with the host).
        const okBy = (process: string): number => ops.filter((op) => op.process === process && op.type === 'ok').length;
        expect({ rdma: okBy('host-x') + okBy('host-y') > 0, dma: okBy('dma') > 0, nvme: okBy('nvme') > 0 }).to.deep.equal({ rdma: true, dma: true, nvme: true });
        // Each fault the nemesis began it also healed: its op completed ok, not info.
        const nemesis = ops.filter((op) => op.process === 'nemesis');
        expect(nemesis.filter((op) => op.type !== 'invoke' && op.type !== 'ok').map((op) => `${op.f}: ${op.error ?? op.type}`)).to.deep.equal([]);
        expect(nemesis.filter((op) => op.type === 'ok')).to.have.lengthOf(nemesis.filter((op) => op.type === 'invoke').length);
        // The gateway the driver started beside the project is gone with the campaign.
        expect((await run('docker', ['ps', '-aq', '--filter', `name=${project}-chaos-gateway`], 15_000)).stdout.trim()).to.equal('');
      } finally {
        fs.rmSync(out, { recursive: true, force: true });
      }
    });
  });
});

describe('docker-compose.tls.yml: the same containers over mutual TLS', function () {
  this.timeout(240_000);
  let env: StartedDockerComposeEnvironment | undefined;
  let certs: string | undefined;
  let tls: TlsConfig;
  const secrets = { adminToken: newToken(), platformToken: newToken() };
  const address = (service: string, port: number): string => {
    const c = serviceContainer(env!, service);
    return `${c.getHost()}:${c.getMappedPort(port)}`;
  };

  before(async function () {
    const unavailable = await dockerUnavailable();
    const compose = unavailable === undefined ? await composeExecutable() : undefined;
    if (compose === undefined) {
      console.warn(`      ${unavailable ?? 'no docker compose'}: compose TLS test skipped`);
      this.skip();
    }
    const root = repoRoot();
    certs = fs.mkdtempSync(path.join(os.tmpdir(), 'p2p-compose-certs-'));
    fs.chmodSync(certs, 0o755);
    // The services run as uid 1000; a root test run hands them their key.
    const made = await run('bash', [path.join(root, 'deploy/scripts/make-dev-certs.sh'), certs], 60_000);
    if (!made.ok) {
      console.warn(`      cannot make certificates (${made.stderr.trim()}): compose TLS test skipped`);
      this.skip();
    }
    fs.chmodSync(path.join(certs, 'service.key'), 0o644);
    // Docker publishes the ports on whatever address the engine is reached
    // at (loopback here, a bridge gateway when the tests run in a container):
    // the client checks the certificate against a service's name instead.
    tls = loadTlsConfig({
      P2P_TLS_CA: path.join(certs, 'ca.crt'),
      P2P_TLS_CERT: path.join(certs, 'client.crt'),
      P2P_TLS_KEY: path.join(certs, 'client.key'),
      P2P_TLS_SERVER_NAME: 'pci-emu',
    });
    const ports = Object.fromEntries(
      ['PCI_EMU', 'DMABUF_REGISTRY', 'VFIO_PCI', 'RDMA_NIC_A', 'RDMA_NIC_B'].flatMap((p) => [
        [`${p}_PORT`, '0'],
        [`${p}_METRICS_PORT`, '0'],
      ]),
    );
    let environment = new DockerComposeEnvironment(root, ['docker-compose.yml', 'docker-compose.tls.yml'])
      .withBuild()
      .withEnvironment({ BASE_IMAGE: await baseImage(root), P2P_TLS_DIR: certs, P2P_ADMIN_TOKEN: secrets.adminToken, P2P_PLATFORM_TOKEN: secrets.platformToken, ...ports })
      .withDefaultWaitStrategy(Wait.forHealthCheck())
      .withStartupTimeout(120_000);
    if (compose!.executable !== undefined) environment = environment.withClientOptions({ executable: compose!.executable });
    env = await environment.up(SERVICES);
  });

  after(async function () {
    this.timeout(120_000);
    await env?.down();
    if (certs !== undefined) fs.rmSync(certs, { recursive: true, force: true });
  });

  it('answers a client with a certificate the CA signed, and refuses a plaintext one', async () => {
    const pciAddress = address('pci-emu', PCI_EMU_GRPC_PORT);
    const secure = new pci.PciEmuServiceClient(pciAddress, channelCredentials(tls));
    await waitForReady(secure, 20_000);
    expect(await listFunctions(secure)).to.have.lengthOf(5);
    secure.close();
    const plain = new pci.PciEmuServiceClient(pciAddress, credentials.createInsecure());
    const refused = await listFunctions(plain).then(
      () => undefined,
      (error: ServiceError) => error,
    );
    plain.close();
    expect(refused?.code).to.equal(14 /* UNAVAILABLE */);
  });

  it("runs the README example over mutual TLS, container to container (the NICs' wire included)", async () => {
    const localShm = fs.mkdtempSync(path.join(os.tmpdir(), 'p2p-compose-'));
    try {
      const { received, expected } = await readAccelBar({
        registry: address('dmabuf-registry', REGISTRY_GRPC_PORT),
        vfioPci: address('vfio-pci', VFIO_GRPC_PORT),
        nicY: address('rdma-nic-a', RDMA_NIC_GRPC_PORT),
        nicX: address('rdma-nic-b', RDMA_NIC_GRPC_PORT),
        shmDir: localShm,
        adminToken: secrets.adminToken,
        tls,
        length: 256 * 1024,
      });
      expect(received.equals(expected)).to.equal(true);
    } finally {
      fs.rmSync(localShm, { recursive: true, force: true });
    }
  });

  it('runs the DMA-mapping example over mutual TLS: vfio-pci pins at the registry and maps in pci-emu over TLS, container to container', async () => {
    const localShm = fs.mkdtempSync(path.join(os.tmpdir(), 'p2p-compose-'));
    try {
      const { expected, copied, transfer, afterRevoke } = await iommufdP2p({
        registry: address('dmabuf-registry', REGISTRY_GRPC_PORT),
        vfioPci: address('vfio-pci', VFIO_GRPC_PORT),
        shmDir: localShm,
        adminToken: secrets.adminToken,
        tls,
      });
      expect(transfer.error).to.equal('NONE');
      expect(copied.equals(expected)).to.equal(true);
      expect(afterRevoke.error).to.equal('IOMMU_FAULT_WRITE');
    } finally {
      fs.rmSync(localShm, { recursive: true, force: true });
    }
  });
});
