import { execFile } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { loadTlsConfig } from '@p2p/auth';
import { isServing } from '@p2p/service-process';
import { SERVICES, type ServiceName } from '../plan/schedule';
import { type CommandLine, COMPOSE_SERVICES, type ComposeProject, composeFaults, inspectCommand, networkCommand } from './compose-commands';
import { ComposeGateway } from './compose-gateway';
import type { Deployment, Driver } from './driver';

function run(command: CommandLine): Promise<string> {
  return new Promise((resolve, reject) => {
    execFile(command.program, [...command.args], { timeout: 60_000 }, (error, stdout, stderr) => {
      if (error !== null) reject(new Error(`${command.program} ${command.args.join(' ')}: ${stderr.trim() || error.message}`));
      else resolve(stdout);
    });
  });
}

/** The v2 plugin when `docker compose` answers, else docker-compose (v1). */
async function detectFlavour(): Promise<'v1' | 'v2'> {
  return run({ program: 'docker', args: ['compose', 'version'] }).then(
    () => 'v2',
    () => 'v1',
  );
}

/** A compose project as the user names it: the flavour is found out when not given. */
export type ComposeTarget = Omit<ComposeProject, 'flavour'> & { readonly flavour?: ComposeProject['flavour'] };

/** How long between two `compose start` while a service that ended itself is not back. */
const RESTART_EVERY_MS = 2000;

/**
 * A deployment `docker compose up` made (v2 or v1), left as it was found,
 * healed. Kill is `kill -s SIGKILL` and `start`, stop is `pause`/`unpause`,
 * a partition takes the container off the project's network and puts it
 * back under its compose name. The campaign runs on the host: it reaches
 * the services, and reads the segment volume, through a gateway container
 * it starts beside them (compose-gateway.ts), since a service's published
 * port changes when its container starts again or rejoins the network (a
 * new endpoint) and the volume is not this host's to read.
 */
export class ComposeDriver implements Driver {
  readonly name = 'compose';
  readonly partitionMethod = 'docker network disconnect (connect to heal)';
  readonly #target: ComposeTarget;
  #project: ComposeProject | undefined;
  #network = '';
  readonly #containers = new Map<ServiceName, string>();
  #gateway: ComposeGateway | undefined;
  #deployment: Deployment | undefined;
  #stopped = false;

  constructor(target: ComposeTarget) {
    this.#target = target;
  }

  async start(): Promise<Deployment> {
    const project: ComposeProject = { ...this.#target, flavour: this.#target.flavour ?? (await detectFlavour()) };
    this.#project = project;
    for (const service of SERVICES) {
      const id = (await run(composeFaults.containerId(project, service))).trim().split('\n')[0] ?? '';
      if (id === '') throw new Error(`no container for ${COMPOSE_SERVICES[service]} in the compose project: is it up (docker compose up -d)?`);
      this.#containers.set(service, id);
    }
    const pciEmu = this.#containers.get('pci-emu')!;
    // The project's network and the services' image, as compose made them (v1 and v2 name projects differently).
    const [network, image] = (await run(inspectCommand('{{range $name, $_ := .NetworkSettings.Networks}}{{$name}} {{end}}|{{.Config.Image}}', [pciEmu]))).trim().split('|') as [string, string];
    this.#network = network.trim().split(' ')[0] ?? '';
    if (this.#network === '') throw new Error('pci-emu is on no network: heal it (docker network connect) first');
    const gatewayName = `${this.#network.replace(/_default$/, '')}-chaos-gateway-${process.pid}`;
    this.#gateway = await ComposeGateway.start({ name: gatewayName, image, network: this.#network, volumesFrom: pciEmu, token: randomBytes(24).toString('hex') }, run);
    const address = (service: ServiceName): string => this.#gateway!.addresses.get(service)!;
    // Compose given P2P_ADMIN_TOKEN: the same here; else the services wrote theirs to the volume.
    const adminToken = process.env.P2P_ADMIN_TOKEN || (await this.#gateway.adminToken());
    this.#deployment = {
      pciEmu: address('pci-emu'),
      vfioPci: address('vfio-pci'),
      registry: address('dmabuf-registry'),
      nics: [address('rdma-nic-0'), address('rdma-nic-1')],
      adminToken,
      tls: loadTlsConfig(),
      // The workload's sessions share no tmpfs with the registry: they get an empty directory of their own, and streams.
      shmDir: fs.mkdtempSync(path.join(os.tmpdir(), 'p2p-chaos-compose-')),
      cpuAccess: 'registry',
      segments: this.#gateway.segments,
    };
    try {
      await this.waitServing(30_000);
    } catch (error) {
      await this.stop();
      throw error;
    }
    return this.#deployment;
  }

  async kill(service: ServiceName): Promise<void> {
    await run(composeFaults.kill(this.#required(), service));
  }

  async revive(): Promise<void> {
    // A start can fail on a published port Docker picked that a host process
    // holds (EADDRINUSE); waitServing starts what is still down again.
    await run(composeFaults.revive(this.#required())).catch(() => undefined);
    await this.waitServing(60_000);
  }

  async pause(service: ServiceName): Promise<void> {
    await run(composeFaults.pause(this.#required(), service));
  }

  async resume(service: ServiceName): Promise<void> {
    await run(composeFaults.unpause(this.#required(), service));
  }

  async partition(service: ServiceName): Promise<void> {
    await run(networkCommand('disconnect', this.#network, this.#containers.get(service)!));
  }

  async heal(service: ServiceName): Promise<void> {
    await run(networkCommand('connect', this.#network, this.#containers.get(service)!, COMPOSE_SERVICES[service]));
  }

  /**
   * Every service answering health through the gateway. vfio-pci and the
   * NICs end themselves when they lose the registry, maybe after the
   * nemesis's `start` ran: as `restart: on-failure` would, what has exited
   * is started again.
   */
  async waitServing(timeoutMs: number): Promise<void> {
    const deployment = this.#deployment;
    if (deployment === undefined) throw new Error('the compose deployment is not found yet');
    const deadline = Date.now() + timeoutMs;
    let restartAt = Date.now() + RESTART_EVERY_MS;
    for (;;) {
      const serving = await Promise.all(SERVICES.map((service) => isServing(this.#gateway!.addresses.get(service)!, 1000, deployment.tls)));
      if (serving.every(Boolean)) return;
      if (Date.now() > deadline) throw new Error(`the compose services are not serving after ${timeoutMs} ms: ${SERVICES.filter((_, i) => !serving[i]).map((s) => COMPOSE_SERVICES[s]).join(', ')}`);
      if (Date.now() > restartAt) {
        restartAt = Date.now() + RESTART_EVERY_MS;
        if (await this.#anyExited()) await run(composeFaults.revive(this.#required())).catch(() => undefined);
      }
      await new Promise((resolve) => setTimeout(resolve, 200));
    }
  }

  async stop(): Promise<void> {
    // The deployment is the user's: a campaign leaves it up, healed; only the gateway and the sessions' directory go.
    if (this.#stopped) return;
    this.#stopped = true;
    await this.#gateway?.close();
    if (this.#deployment !== undefined) fs.rmSync(this.#deployment.shmDir, { recursive: true, force: true });
  }

  async #anyExited(): Promise<boolean> {
    const states = (await run(inspectCommand('{{.State.Status}}', [...this.#containers.values()])).catch(() => '')).trim().split('\n');
    return states.some((state) => state === 'exited' || state === 'created');
  }

  #required(): ComposeProject {
    if (this.#project === undefined) throw new Error('the compose deployment is not found yet');
    return this.#project;
  }
}
