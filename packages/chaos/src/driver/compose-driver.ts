import { execFile } from 'node:child_process';
import * as path from 'node:path';
import { loadTlsConfig } from '@p2p/auth';
import { isServing } from '@p2p/service-process';
import { SERVICES, type ServiceName } from '../plan/schedule';
import { type CommandLine, type ComposeProject, composeFaults, defaultNetwork, dialAddress, networkCommand } from './compose-commands';
import type { Deployment, Driver } from './driver';

function run(command: CommandLine): Promise<string> {
  return new Promise((resolve, reject) => {
    execFile(command.program, [...command.args], { timeout: 60_000 }, (error, stdout, stderr) => {
      if (error !== null) reject(new Error(`${command.program} ${command.args.join(' ')}: ${stderr.trim() || error.message}`));
      else resolve(stdout);
    });
  });
}

/**
 * A deployment `docker compose up` made: kill is `kill -s SIGKILL` and
 * `start`, stop is `pause`/`unpause`, a partition takes the container off
 * the project's network. The segment volume is the containers' own, so the
 * checkers read the BAR through pci-emu (BulkRead, all ones while it does
 * not decode) and cannot look for left-over segment files.
 */
export class ComposeDriver implements Driver {
  readonly name = 'compose';
  readonly partitionMethod: string;
  readonly #project: ComposeProject;
  readonly #network: string;
  #deployment: Deployment | undefined;

  constructor(project: ComposeProject) {
    this.#project = project;
    this.#network = defaultNetwork(project.name ?? path.basename(path.resolve(project.directory ?? (project.file === undefined ? '.' : path.dirname(project.file)))));
    this.partitionMethod = `docker network disconnect ${this.#network} (and connect to heal)`;
  }

  async start(): Promise<Deployment> {
    const addresses = new Map<ServiceName, string>();
    for (const service of SERVICES) addresses.set(service, dialAddress(await run(composeFaults.port(this.#project, service))));
    const token = (await run(composeFaults.adminToken(this.#project))).trim();
    this.#deployment = {
      pciEmu: addresses.get('pci-emu')!,
      vfioPci: addresses.get('vfio-pci')!,
      registry: addresses.get('dmabuf-registry')!,
      nics: [addresses.get('rdma-nic-0')!, addresses.get('rdma-nic-1')!],
      adminToken: token === '' ? undefined : token,
      tls: loadTlsConfig(),
      shmDir: undefined,
    };
    await this.waitServing(30_000);
    return this.#deployment;
  }

  async kill(service: ServiceName): Promise<void> {
    await run(composeFaults.kill(this.#project, service));
  }

  async revive(): Promise<void> {
    await run(composeFaults.revive(this.#project));
    await this.waitServing(60_000);
  }

  async pause(service: ServiceName): Promise<void> {
    await run(composeFaults.pause(this.#project, service));
  }

  async resume(service: ServiceName): Promise<void> {
    await run(composeFaults.unpause(this.#project, service));
  }

  async partition(service: ServiceName): Promise<void> {
    await run(networkCommand('disconnect', this.#network, await this.#container(service)));
  }

  async heal(service: ServiceName): Promise<void> {
    await run(networkCommand('connect', this.#network, await this.#container(service)));
  }

  async waitServing(timeoutMs: number): Promise<void> {
    const deployment = this.#deployment;
    if (deployment === undefined) throw new Error('the compose deployment is not found yet');
    const addresses = [deployment.pciEmu, deployment.vfioPci, deployment.registry, ...deployment.nics];
    const deadline = Date.now() + timeoutMs;
    while (!(await Promise.all(addresses.map((a) => isServing(a, 1000, deployment.tls)))).every(Boolean)) {
      if (Date.now() > deadline) throw new Error(`the compose services are not serving after ${timeoutMs} ms`);
      await new Promise((resolve) => setTimeout(resolve, 200));
    }
  }

  async stop(): Promise<void> {
    // The deployment is the user's: a campaign leaves it up, healed.
  }

  async #container(service: ServiceName): Promise<string> {
    const id = (await run(composeFaults.containerId(this.#project, service))).trim();
    if (id === '') throw new Error(`no container for ${service}`);
    return id;
  }
}
