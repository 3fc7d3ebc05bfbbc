/**
 * deploy/swarm/stack.yml on a real Docker swarm: three emulated hosts, each
 * four services on its own tmpfs volume, their NICs on one overlay network.
 * Builds the services image from the built workspace, makes this engine a
 * swarm manager if it is not one (and leaves the swarm afterwards only then),
 * deploys the stack and waits for every service to be healthy. Then, from
 * containers on the overlay network (on neither host's tmpfs): the
 * cross-host example between host-a and host-b, and a host killed
 * mid-transfer (host-b's four containers, as a pod killed), where the peer
 * gets RETRY_EXC_ERR once and a new QP works once swarm has restarted the
 * host. `p2p chaos` drives local processes or a compose project, not a
 * swarm stack: the fault run stands in for it here.
 *
 * Needs a Docker engine; without one the suite skips with a message. Base
 * image as the compose test finds it (harness/docker.ts).
 */
import { spawn } from 'node:child_process';
import * as path from 'node:path';
import { expect } from 'chai';
import { newToken } from '@p2p/auth';
import { Prng } from '@p2p/chaos';
import { baseImage, buildServicesImage, dockerUnavailable, repoRoot, run, type RunResult } from '../harness/docker';

const STACK = 'p2p-swarm-test';
const IMAGE = 'p2p-dmabuf/services:swarm-test';
/** The stack's overlay network, as docker stack deploy names it (`<stack>_hosts`). */
const NETWORK = `${STACK}_hosts`;
const HOSTS = ['host-a', 'host-b', 'host-c'] as const;
const SERVICES = HOSTS.flatMap((host) => ['pci-emu', 'registry', 'vfio-pci', 'nic'].map((service) => `${host}-${service}`));

/** A host's services by their names on the overlay network. */
function hostEnv(prefix: 'HOST_A' | 'HOST_B', host: string): Record<string, string> {
  return {
    [`${prefix}_NAME`]: host,
    [`${prefix}_REGISTRY_ADDRESS`]: `${host}-registry:50053`,
    [`${prefix}_VFIO_PCI_ADDRESS`]: `${host}-vfio-pci:50052`,
    [`${prefix}_NIC_ADDRESS`]: `${host}-nic:50054`,
  };
}

/** `docker run` of `script` (under tests/dist) on the overlay network: tests/ is not in the image, so the built tests are mounted. */
function runBesideArgs(name: string, script: string, env: Record<string, string>): string[] {
  return [
    ...['run', '--rm', '--name', name, '--network', NETWORK],
    ...['-v', `${path.join(repoRoot(), 'tests/dist')}:/app/tests/dist:ro`],
    ...Object.entries(env).flatMap(([key, value]) => ['-e', `${key}=${value}`]),
    ...[IMAGE, 'node', `tests/dist/${script}`],
  ];
}

/** The stack's running containers: service name -> container id. */
async function runningContainers(): Promise<Map<string, { id: string; healthy: boolean }>> {
  const listed = await run('docker', ['ps', '--filter', `label=com.docker.stack.namespace=${STACK}`, '--format', '{{.ID}}\t{{.Label "com.docker.swarm.service.name"}}\t{{.Status}}'], 15_000);
  const containers = new Map<string, { id: string; healthy: boolean }>();
  for (const line of listed.stdout.trim().split('\n').filter(Boolean)) {
    const [id, service, status] = line.split('\t') as [string, string, string];
    const name = service.slice(STACK.length + 1);
    // A killed task's successor may start while the old one is listed: a healthy one wins.
    if (!containers.get(name)?.healthy) containers.set(name, { id, healthy: status.includes('(healthy)') });
  }
  return containers;
}

/** Resolves once every service has a healthy container (and, for `replacing`, not the one it had). */
async function whenHealthy(timeoutMs: number, replacing: ReadonlyMap<string, string> = new Map()): Promise<Map<string, { id: string; healthy: boolean }>> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const containers = await runningContainers();
    const waiting = SERVICES.filter((service) => !containers.get(service)?.healthy || containers.get(service)?.id === replacing.get(service));
    if (waiting.length === 0) return containers;
    if (Date.now() > deadline) throw new Error(`not healthy within ${timeoutMs / 1000} s: ${waiting.join(', ')}`);
    await new Promise((resolve) => setTimeout(resolve, 1000));
  }
}

/** Polls `check` every 250 ms; fails with `why()` after `timeoutMs`. */
async function untilTrue(check: () => boolean, timeoutMs: number, why: () => string): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!check()) {
    if (Date.now() > deadline) throw new Error(why());
    await new Promise((resolve) => setTimeout(resolve, 250));
  }
}

/** docker stack rm, then what it leaves: the containers it removes in the background, the volumes, the network. */
async function removeStack(): Promise<void> {
  await run('docker', ['stack', 'rm', STACK], 60_000);
  const label = `label=com.docker.stack.namespace=${STACK}`;
  const deadline = Date.now() + 60_000;
  while ((await run('docker', ['ps', '-aq', '--filter', label], 15_000)).stdout.trim() !== '' && Date.now() < deadline) {
    await new Promise((resolve) => setTimeout(resolve, 1000));
  }
  const leftover = (await run('docker', ['ps', '-aq', '--filter', label], 15_000)).stdout.trim().split('\n').filter(Boolean);
  if (leftover.length > 0) await run('docker', ['rm', '-f', ...leftover], 60_000);
  const volumes = (await run('docker', ['volume', 'ls', '-q', '--filter', label], 15_000)).stdout.trim().split('\n').filter(Boolean);
  if (volumes.length > 0) await run('docker', ['volume', 'rm', '-f', ...volumes], 60_000);
  while ((await run('docker', ['network', 'ls', '-q', '--filter', label], 15_000)).stdout.trim() !== '' && Date.now() < deadline) {
    await new Promise((resolve) => setTimeout(resolve, 1000));
  }
  await run('docker', ['network', 'rm', NETWORK], 30_000);
}

/** Whether docker_gwbridge, the bridge swarm init makes and leave keeps, was there before this suite's init. */
let gwbridgeBefore = true;

/** Makes this engine a swarm manager; true if this call did (so the caller leaves afterwards). */
async function ensureSwarmManager(): Promise<boolean> {
  const state = await run('docker', ['info', '--format', '{{.Swarm.LocalNodeState}} {{.Swarm.ControlAvailable}}'], 15_000);
  const [nodeState, control] = state.stdout.trim().split(' ');
  if (nodeState === 'active' && control === 'true') return false;
  if (nodeState === 'active') throw new Error('this engine is a swarm worker: docker stack deploy needs a manager');
  gwbridgeBefore = (await run('docker', ['network', 'inspect', 'docker_gwbridge'], 15_000)).ok;
  const plain = await run('docker', ['swarm', 'init'], 60_000);
  if (plain.ok) return true;
  // Several interfaces, none chosen: a one-node swarm can advertise loopback.
  const loopback = await run('docker', ['swarm', 'init', '--advertise-addr', '127.0.0.1'], 60_000);
  if (!loopback.ok) throw new Error(`docker swarm init failed: ${plain.stderr.trim()}; with --advertise-addr 127.0.0.1: ${loopback.stderr.trim()}`);
  return true;
}

describe('deploy/swarm/stack.yml: three hosts on Docker swarm, their NICs on one overlay network', function () {
  this.timeout(300_000);
  const secrets = { adminToken: newToken(), platformToken: newToken() };
  let initialisedSwarm = false;
  let deployed = false;

  before(async function () {
    const unavailable = await dockerUnavailable();
    if (unavailable !== undefined) {
      console.warn(`      ${unavailable}: swarm test skipped`);
      this.skip();
    }
    const root = repoRoot();
    const started = Date.now();
    const base = await baseImage(root);
    await buildServicesImage(root, IMAGE, base);
    initialisedSwarm = await ensureSwarmManager();
    // A stack a crashed run left behind goes first: its volumes hold another run's hosts.
    await removeStack();
    deployed = true;
    const deploy = await run('docker', ['stack', 'deploy', '-c', path.join(root, 'deploy/swarm/stack.yml'), STACK], 120_000, root, {
      P2P_IMAGE: IMAGE,
      P2P_ADMIN_TOKEN: secrets.adminToken,
      P2P_PLATFORM_TOKEN: secrets.platformToken,
    });
    if (!deploy.ok) throw new Error(`docker stack deploy failed: ${deploy.stderr}`);
    await whenHealthy(180_000);
    console.log(`      image (BASE_IMAGE=${base}), swarm ${initialisedSwarm ? 'initialised' : 'already active'}, stack deployed and healthy: ${((Date.now() - started) / 1000).toFixed(1)} s`);
  });

  after(async function () {
    this.timeout(180_000);
    if (deployed) await removeStack();
    if (initialisedSwarm) {
      await run('docker', ['swarm', 'leave', '--force'], 60_000);
      if (!gwbridgeBefore) await run('docker', ['network', 'rm', 'docker_gwbridge'], 30_000);
    }
  });

  it("runs the cross-host example: host-a's NIC reads host-b's accel0 BAR over the overlay network, identical", async () => {
    const name = `${STACK}-cross-host-read-${process.pid}`;
    const result = await run(
      'docker',
      runBesideArgs(name, 'examples/cross-host-read.js', { ...hostEnv('HOST_A', 'host-a'), ...hostEnv('HOST_B', 'host-b'), HOST_B_ADMIN_TOKEN: secrets.adminToken }),
      120_000,
    );
    if (!result.ok) await run('docker', ['rm', '-f', name], 30_000);
    expect(result.ok, `${result.stdout}\n${result.stderr}`).to.equal(true);
    expect(result.stdout.trim().split('\n').at(-1)).to.equal("read 1048576 bytes of host-b's accel0 BAR into host-a's memory over the wire: identical");
  });

  it('survives a short seeded chaos run across the hosts: containers killed and NICs paused under cross-host reads, never a wrong byte or a stall, and every pair reads again once healed', async () => {
    const seed = Number(process.env.P2P_SWARM_CHAOS_SEED ?? 7);
    const prng = new Prng(seed);
    const pairs = ['host-a<host-b', 'host-b<host-c'];
    const name = `${STACK}-cross-host-chaos-${process.pid}`;
    const addressEnv = Object.fromEntries(
      HOSTS.flatMap((host) => {
        const prefix = host.toUpperCase().replace(/-/g, '_');
        return [
          [`${prefix}_REGISTRY`, `${host}-registry:50053`],
          [`${prefix}_VFIO_PCI`, `${host}-vfio-pci:50052`],
          [`${prefix}_NIC`, `${host}-nic:50054`],
        ];
      }),
    );
    const reads: { pair: string; startedAt: number; ms: number; outcome: string; error?: string }[] = [];
    let stderr = '';
    const child = spawn('docker', runBesideArgs(name, 'deploy/processes/cross-host-chaos.js', { ...addressEnv, PAIRS: pairs.join(','), ADMIN_TOKEN: secrets.adminToken }));
    const exited = new Promise<number>((resolve) => child.on('close', (code) => resolve(code ?? 1)));
    child.stderr.on('data', (chunk: Buffer) => (stderr += chunk.toString()));
    let buffered = '';
    child.stdout.on('data', (chunk: Buffer) => {
      buffered += chunk.toString();
      for (let end = buffered.indexOf('\n'); end >= 0; end = buffered.indexOf('\n')) {
        reads.push(JSON.parse(buffered.slice(0, end)) as (typeof reads)[number]);
        buffered = buffered.slice(end + 1);
      }
    });
    const faults: string[] = [];
    try {
      // The reads get going before the first fault.
      await untilTrue(() => pairs.every((pair) => reads.some((read) => read.pair === pair && read.outcome === 'identical')), 60_000, () => `no read got through before the faults: ${stderr}`);
      for (let i = 0; i < 8; i++) {
        const containers = await runningContainers();
        const service = prng.pick(SERVICES);
        const id = containers.get(service)?.id;
        if (id !== undefined && prng.chance(0.5)) {
          faults.push(`kill ${service}`);
          await run('docker', ['kill', id], 30_000);
        } else {
          const nic = prng.pick(HOSTS.map((host) => `${host}-nic`));
          const nicId = containers.get(nic)?.id;
          if (nicId === undefined) continue;
          const pauseMs = 500 + prng.below(2000);
          faults.push(`pause ${nic} ${pauseMs} ms`);
          await run('docker', ['pause', nicId], 30_000);
          await new Promise((resolve) => setTimeout(resolve, pauseMs));
          await run('docker', ['unpause', nicId], 30_000);
        }
        await new Promise((resolve) => setTimeout(resolve, 1500 + prng.below(2500)));
      }
      await whenHealthy(180_000);
      const healedAt = Date.now();
      // Liveness: once every host is back, each pair reads again.
      await untilTrue(
        () => pairs.every((pair) => reads.some((read) => read.pair === pair && read.startedAt >= healedAt && read.outcome === 'identical')),
        120_000,
        () => `a pair did not read again after healing (seed ${seed}; faults: ${faults.join(', ')}); last reads: ${JSON.stringify(reads.slice(-6))}; ${stderr}`,
      );
    } finally {
      await run('docker', ['rm', '-f', name], 30_000);
      await exited;
    }
    const errors = reads.filter((read) => read.outcome === 'error');
    console.log(`      seed ${seed}: ${faults.join(', ')}; ${reads.length} reads, ${errors.length} failed with an error (indeterminate under faults)`);
    // Safety: a read either gets accel0's bytes or fails; it never completes with other bytes, and never hangs.
    expect(reads.filter((read) => read.outcome === 'different' || read.outcome === 'stalled'), `seed ${seed}`).to.deep.equal([]);
    expect(faults.length).to.be.at.least(4);
  });

  it('kills host-b whole mid-transfer: RETRY_EXC_ERR once at host-a, the rest flushed; swarm restarts host-b and a new QP to it moves bytes again', async () => {
    const before = await runningContainers();
    const hostB = SERVICES.filter((service) => service.startsWith('host-b-'));
    const killed = new Map(hostB.map((service) => [service, before.get(service)!.id]));
    const name = `${STACK}-cross-host-fault-${process.pid}`;
    const events = new Map<string, Record<string, unknown>>();
    let stderr = '';
    const child = spawn('docker', runBesideArgs(name, 'deploy/processes/cross-host-fault.js', { ...hostEnv('HOST_A', 'host-a'), ...hostEnv('HOST_B', 'host-b') }));
    const exited = new Promise<number>((resolve) => child.on('close', (code) => resolve(code ?? 1)));
    child.stderr.on('data', (chunk: Buffer) => (stderr += chunk.toString()));
    let buffered = '';
    let kill: Promise<RunResult> | undefined;
    child.stdout.on('data', (chunk: Buffer) => {
      buffered += chunk.toString();
      for (let end = buffered.indexOf('\n'); end >= 0; end = buffered.indexOf('\n')) {
        const event = JSON.parse(buffered.slice(0, end)) as { event: string };
        buffered = buffered.slice(end + 1);
        events.set(event.event, event);
        // The stream is under way: the host goes, all four of its containers at once, as a pod killed.
        if (event.event === 'streaming') kill = run('docker', ['kill', ...killed.values()], 30_000);
      }
    });
    const timer = setTimeout(() => void run('docker', ['rm', '-f', name], 30_000), 240_000);
    const code = await exited.finally(() => clearTimeout(timer));
    expect(kill, `the stream never got under way: ${stderr}`).to.not.equal(undefined);
    const killing = await kill!;
    expect(killing.ok, killing.stderr).to.equal(true);
    expect(code, stderr).to.equal(0);

    const failed = events.get('failed') as { everyOnce: boolean; inPostOrder: boolean; succeeded: number; failed: string[]; qpState: string };
    expect(failed.failed, 'the one error at host-a').to.deep.equal(['RETRY_EXC_ERR']);
    expect(failed.everyOnce, 'every WR completed exactly once').to.equal(true);
    expect(failed.inPostOrder, 'completions in post order').to.equal(true);
    expect(failed.succeeded).to.be.at.least(64);
    expect(failed.qpState).to.equal('QP_STATE_ERR');

    const again = events.get('again') as { posted: number; succeeded: number; notLanded: number[] };
    expect({ succeeded: again.succeeded, notLanded: again.notLanded }).to.deep.equal({ succeeded: again.posted, notLanded: [] });
    // Swarm brought host-b back as new tasks (new containers), not the killed ones.
    await whenHealthy(120_000, killed);
  });
});
