import { type ChildProcess, spawn } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';
import * as readline from 'node:readline';
import type { Logger } from 'pino';
import { loadTlsConfig } from '@p2p/auth';
import { type HostEntry, hostEntry, type HostLayout, hostLayouts, HOSTS_FILE, type LayoutBases, serviceEnv, writeHostsFile } from '@p2p/hosts';
import { isServing } from '@p2p/service-process';
import { resolveShmDir } from '@p2p/shm';

/** How long every host has to answer SERVING on all its services: many hosts start at once on few cores. */
const START_TIMEOUT_MS = 180_000;
/** How long a host has to drain after SIGTERM (each service's own SHUTDOWN_TIMEOUT_MS, in turn) before SIGKILL. */
const STOP_TIMEOUT_MS = 30_000;
/** RDMA_NIC_WIRE_PORT's default, the rdma-nic service's. */
const DEFAULT_WIRE_PORT = 4791;

/** Variables a host must not inherit from the parent: they would make it start many hosts itself. */
const PARENT_ONLY = ['npm_config_hosts', 'P2P_HOSTS'];

export interface ManyHostsOptions {
  readonly count: number;
  readonly bases: LayoutBases;
  readonly env: NodeJS.ProcessEnv;
  readonly logger: Logger;
}

/** Hosts running as child processes, and the hosts file that lists them. */
export interface ManyHosts {
  readonly hosts: readonly HostEntry[];
  readonly hostsFile: string;
  /** Stops every host (SIGTERM, SIGKILL after a while) and removes the hosts file. */
  stop(reason: string): Promise<void>;
  /** Resolves when a host exits that was not told to: which one, and how. */
  readonly died: Promise<{ host: string; code: number | null; signal: NodeJS.Signals | null }>;
}

interface HostProcess {
  readonly layout: HostLayout;
  readonly child: ChildProcess;
  readonly exited: Promise<void>;
}

/**
 * The topology file of host `index`: P2P_HOST<index>_TOPOLOGY, else
 * PCI_EMU_TOPOLOGY for every host, else pci-emu's built-in one.
 */
export function topologyOf(index: number, env: NodeJS.ProcessEnv): string | undefined {
  const file = env[`P2P_HOST${index}_TOPOLOGY`] || env.PCI_EMU_TOPOLOGY || undefined;
  return file === undefined ? undefined : path.resolve(file);
}

/**
 * Starts `count` hosts, each the one-host stack in a process of its own
 * (this file's main with --host-index), on a segment directory of its own
 * under P2P_SHM_DIR (host<i>), with its ports and NIC addresses from the
 * layout; waits until every service of every host answers SERVING, then
 * writes `<P2P_SHM_DIR>/hosts.json`. The hosts run in their own process
 * groups, so a terminal's Ctrl-C reaches this process only, which stops
 * them once; each also stops if this process goes (its IPC channel closes).
 */
export async function startManyHosts(options: ManyHostsOptions): Promise<ManyHosts> {
  const { env, logger } = options;
  const layouts = hostLayouts(options.count, options.bases);
  const root = resolveShmDir(env);
  const hostsFile = path.join(root, HOSTS_FILE);
  const wirePort = env.RDMA_NIC_WIRE_PORT ? Number(env.RDMA_NIC_WIRE_PORT) : DEFAULT_WIRE_PORT;
  let stopping = false;
  let reportDeath: (death: { host: string; code: number | null; signal: NodeJS.Signals | null }) => void = () => undefined;
  const died = new Promise<{ host: string; code: number | null; signal: NodeJS.Signals | null }>((resolve) => (reportDeath = resolve));

  const processes = layouts.map((layout): HostProcess => {
    const shmDir = path.join(root, layout.name);
    const child = spawn(process.execPath, [path.join(__dirname, 'main.js'), ...hostArgs(layout, options.bases)], {
      env: hostEnv(layout, shmDir, env),
      stdio: ['ignore', 'pipe', 'pipe', 'ipc'],
      detached: true,
    });
    forwardLogs(child, layout.name);
    const exited = new Promise<void>((resolve) =>
      child.once('exit', (code, signal) => {
        if (!stopping) {
          logger.error({ host: layout.name, pid: child.pid, code, signal }, `${layout.name} exited (${signal ?? `code ${code}`}): stopping every host`);
          reportDeath({ host: layout.name, code, signal });
        }
        resolve();
      }),
    );
    return { layout, child, exited };
  });

  const stop = async (reason: string): Promise<void> => {
    stopping = true;
    logger.info({ reason, hosts: processes.length }, 'stopping every host');
    const running = processes.filter((p) => p.child.exitCode === null && p.child.signalCode === null);
    for (const p of running) p.child.kill('SIGTERM');
    const timer = setTimeout(() => {
      for (const p of running) if (p.child.exitCode === null && p.child.signalCode === null) p.child.kill('SIGKILL');
    }, STOP_TIMEOUT_MS);
    await Promise.all(running.map((p) => p.exited));
    clearTimeout(timer);
    fs.rmSync(hostsFile, { force: true });
  };

  const starting = { over: false };
  try {
    await Promise.race([
      Promise.all(processes.map((p) => untilServing(p.layout, starting))),
      died.then(({ host }) => Promise.reject(new Error(`${host} exited before it served`))),
      new Promise((_, reject) => setTimeout(() => reject(new Error(`the hosts did not all serve within ${START_TIMEOUT_MS / 1000} s`)), START_TIMEOUT_MS).unref()),
    ]);
  } catch (error) {
    await stop('a host failed to start');
    throw error;
  } finally {
    starting.over = true;
  }
  const hosts = processes.map((p) => hostEntry(p.layout, { shmDir: path.join(root, p.layout.name), wirePort, topology: topologyOf(p.layout.index, env), pid: p.child.pid }));
  writeHostsFile(hostsFile, hosts);
  // However this process ends (a second Ctrl-C exits at once), the file lists no host that is gone.
  process.once('exit', () => fs.rmSync(hostsFile, { force: true }));
  return { hosts, hostsFile, stop, died };
}

/** The command line of host `layout`'s process: its place in the layout. */
function hostArgs(layout: HostLayout, bases: LayoutBases): string[] {
  return ['--host-index', String(layout.index), '--port-base', String(bases.portBase), '--metrics-port-base', String(bases.metricsPortBase)];
}

/** A host's environment: the parent's, with its own segment directory, ports, topology and NVMe data directory. */
function hostEnv(layout: HostLayout, shmDir: string, env: NodeJS.ProcessEnv): NodeJS.ProcessEnv {
  const own: NodeJS.ProcessEnv = { ...env, ...serviceEnv(layout), P2P_SHM_DIR: shmDir };
  for (const name of PARENT_ONLY) delete own[name];
  const topology = topologyOf(layout.index, env);
  if (topology === undefined) delete own.PCI_EMU_TOPOLOGY;
  else own.PCI_EMU_TOPOLOGY = topology;
  // Namespaces are a host's disks: a shared PCI_EMU_DATA_DIR gets a directory per host.
  if (env.PCI_EMU_DATA_DIR) own.PCI_EMU_DATA_DIR = path.join(path.resolve(env.PCI_EMU_DATA_DIR), layout.name);
  return own;
}

/** The host's log lines on this process's output, each JSON line naming the host. */
function forwardLogs(child: ChildProcess, host: string): void {
  readline.createInterface({ input: child.stdout! }).on('line', (line) => {
    process.stdout.write(line.startsWith('{') ? `{"host":"${host}",${line.slice(1)}\n` : `[${host}] ${line}\n`);
  });
  readline.createInterface({ input: child.stderr! }).on('line', (line) => process.stderr.write(`[${host}] ${line}\n`));
}

/** Resolves once every service of the host answers SERVING, or once the start is over (another host failed). */
async function untilServing(layout: HostLayout, starting: { readonly over: boolean }): Promise<void> {
  const tls = loadTlsConfig();
  const ports = [layout.ports.pciEmu, layout.ports.registry, layout.ports.vfioPci, ...layout.nics.map((n) => n.port)];
  for (const port of ports) {
    while (!starting.over && !(await isServing(`127.0.0.1:${port}`, 1000, tls))) await new Promise((resolve) => setTimeout(resolve, 200));
  }
}
