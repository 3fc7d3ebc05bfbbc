import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { loadPlatformSecrets, loadTlsConfig } from '@p2p/auth';
import { freePort, isServing, type ServiceProcess, startServiceProcess } from '@p2p/service-process';
import { SERVICES, type ServiceName } from '../plan/schedule';
import type { Deployment, Driver } from './driver';
import { FAULT_RULE_PARTITION, healFaultRulePartition, partitionByFaultRule } from './fault-rule-partition';
import { localSegmentFiles } from './segment-files';

/** nic0 beside nvme0 and nic1 beside accel0 in pci-emu's default topology, each with its own GID address. */
const NICS = { 'rdma-nic-0': { bdf: '0000:04:00.0', ip: '127.0.0.2' }, 'rdma-nic-1': { bdf: '0000:09:00.0', ip: '127.0.0.3' } } as const;
const PREFIX: Record<ServiceName, string> = { 'pci-emu': 'PCI_EMU', 'vfio-pci': 'VFIO_PCI', 'dmabuf-registry': 'DMABUF_REGISTRY', 'rdma-nic-0': 'RDMA_NIC', 'rdma-nic-1': 'RDMA_NIC' };
/** How long a supervisor waits before starting an exited service again. */
const RESTART_DELAY_MS = 100;

interface Supervised {
  readonly service: ServiceName;
  readonly port: number;
  process: ServiceProcess | undefined;
  /** Held down by the nemesis (killed, not yet revived): the supervisor leaves it. */
  down: boolean;
  /** A start in progress. */
  starting: Promise<void> | undefined;
}

/**
 * Every service as its own process on loopback, on a fresh segment
 * directory, under a supervisor that starts again (on the same port)
 * whatever exits, as `restart: on-failure` would: vfio-pci and the NICs
 * end themselves when they lose the registry, and come back to the new one.
 */
export class LocalDriver implements Driver {
  readonly name = 'local';
  readonly partitionMethod = FAULT_RULE_PARTITION;
  readonly #services = new Map<ServiceName, Supervised>();
  #deployment: Deployment | undefined;
  #env: NodeJS.ProcessEnv = {};
  #stopping = false;
  readonly #log: (line: string) => void;

  constructor(log: (line: string) => void = () => undefined) {
    this.#log = log;
  }

  async start(): Promise<Deployment> {
    const shmDir = fs.mkdtempSync(path.join(fs.existsSync('/dev/shm') ? '/dev/shm' : os.tmpdir(), 'p2p-chaos-'));
    const ports = new Map<ServiceName, number>();
    for (const service of SERVICES) ports.set(service, await freePort());
    const address = (service: ServiceName): string => `127.0.0.1:${ports.get(service)!}`;
    this.#env = {
      P2P_SHM_DIR: shmDir,
      LOG_LEVEL: 'warn',
      PCI_EMU_ADDRESS: address('pci-emu'),
      DMABUF_REGISTRY_ADDRESS: address('dmabuf-registry'),
      RDMA_NIC_WIRE_PORT: String(await freePort()),
    };
    for (const service of SERVICES) this.#services.set(service, { service, port: ports.get(service)!, process: undefined, down: false, starting: undefined });
    try {
      // pci-emu first (it makes the tokens), then the registry, then those that need it.
      for (const service of SERVICES) if (service === 'pci-emu' || service === 'dmabuf-registry') await this.#start(this.#services.get(service)!);
      await Promise.all(SERVICES.filter((s) => s !== 'pci-emu' && s !== 'dmabuf-registry').map((s) => this.#start(this.#services.get(s)!)));
    } catch (error) {
      await this.stop();
      throw error;
    }
    const tls = loadTlsConfig();
    this.#deployment = {
      pciEmu: address('pci-emu'),
      vfioPci: address('vfio-pci'),
      registry: address('dmabuf-registry'),
      nics: [address('rdma-nic-0'), address('rdma-nic-1')],
      adminToken: loadPlatformSecrets(shmDir, {}).adminToken,
      tls,
      shmDir,
      cpuAccess: 'mmap',
      segments: localSegmentFiles(shmDir),
    };
    return this.#deployment;
  }

  async kill(service: ServiceName): Promise<void> {
    const supervised = this.#services.get(service)!;
    supervised.down = true;
    await supervised.starting;
    await supervised.process?.stop('SIGKILL');
  }

  async revive(service: ServiceName): Promise<void> {
    this.#services.get(service)!.down = false;
    for (const supervised of this.#services.values()) if (!this.#alive(supervised) && supervised.starting === undefined) this.#restart(supervised, 0);
    await this.waitServing(30_000);
  }

  async pause(service: ServiceName): Promise<void> {
    this.#services.get(service)!.process?.child.kill('SIGSTOP');
  }

  async resume(service: ServiceName): Promise<void> {
    this.#services.get(service)!.process?.child.kill('SIGCONT');
  }

  partition(service: ServiceName): Promise<void> {
    return partitionByFaultRule(this.#required(), `127.0.0.1:${this.#services.get(service)!.port}`);
  }

  heal(service: ServiceName): Promise<void> {
    return healFaultRulePartition(this.#required(), `127.0.0.1:${this.#services.get(service)!.port}`);
  }

  async waitServing(timeoutMs: number): Promise<void> {
    const deadline = Date.now() + timeoutMs;
    const tls = loadTlsConfig();
    for (;;) {
      const serving = await Promise.all([...this.#services.values()].map(async (s) => this.#alive(s) && (await isServing(`127.0.0.1:${s.port}`, 1000, tls))));
      if (serving.every(Boolean)) return;
      if (Date.now() > deadline) throw new Error(`services not serving after ${timeoutMs} ms: ${[...this.#services.keys()].filter((_, i) => !serving[i]).join(', ')}`);
      await new Promise((resolve) => setTimeout(resolve, 50));
    }
  }

  async stop(): Promise<void> {
    this.#stopping = true;
    for (const supervised of [...this.#services.values()].reverse()) {
      await supervised.starting;
      supervised.process?.child.kill('SIGCONT');
      await supervised.process?.stop('SIGKILL');
    }
    const shmDir = this.#env.P2P_SHM_DIR;
    if (shmDir !== undefined) fs.rmSync(shmDir, { recursive: true, force: true });
  }

  #required(): Deployment {
    if (this.#deployment === undefined) throw new Error('the local deployment is not started');
    return this.#deployment;
  }

  #alive(supervised: Supervised): boolean {
    const child = supervised.process?.child;
    return child !== undefined && child.exitCode === null && child.signalCode === null;
  }

  #start(supervised: Supervised): Promise<void> {
    const nic = supervised.service === 'rdma-nic-0' || supervised.service === 'rdma-nic-1' ? NICS[supervised.service] : undefined;
    const env = { ...this.#env, ...(nic === undefined ? {} : { RDMA_NIC_BDF: nic.bdf, RDMA_NIC_GID_ADDRESS: nic.ip }) };
    const starting = startServiceProcess(supervised.service.startsWith('rdma-nic') ? 'rdma-nic' : supervised.service, PREFIX[supervised.service], { env, port: supervised.port }).then((started) => {
      supervised.process = started;
      started.child.once('exit', (code, signal) => {
        if (this.#stopping || supervised.down) return;
        this.#log(`${supervised.service} exited (${signal ?? `status ${code}`}); starting it again`);
        this.#restart(supervised, RESTART_DELAY_MS);
      });
    });
    // Its failure is the caller's to handle; the slot only says a start is under way.
    supervised.starting = starting.then(
      () => undefined,
      () => undefined,
    ).finally(() => {
      supervised.starting = undefined;
    });
    return starting;
  }

  #restart(supervised: Supervised, delayMs: number): void {
    setTimeout(() => {
      if (this.#stopping || supervised.down || this.#alive(supervised) || supervised.starting !== undefined) return;
      this.#start(supervised).catch((error: unknown) => {
        this.#log(`${supervised.service} did not start: ${(error instanceof Error ? error.message : String(error)).split('\n')[0]}`);
        this.#restart(supervised, 500);
      });
    }, delayMs);
  }
}
