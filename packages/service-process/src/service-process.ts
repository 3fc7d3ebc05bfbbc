import { type ChildProcess, spawn } from 'node:child_process';
import * as net from 'node:net';
import * as path from 'node:path';
import * as readline from 'node:readline';
import { ADMIN_TOKEN_ENV, loadTlsConfig, PLATFORM_TOKEN_ENV } from '@p2p/auth';
import { isServing } from './health';

const REPO_ROOT = path.resolve(__dirname, '..', '..', '..');

/** services/<service>/dist/main.js: a service's entry point once built. */
export function serviceMain(service: string): string {
  return path.join(REPO_ROOT, 'services', service, 'dist', 'main.js');
}

/** A service running as its own process, as it would in production. */
export interface ServiceProcess {
  readonly child: ChildProcess;
  readonly port: number;
  readonly address: string;
  /** Log lines (pino JSON) and stderr so far. */
  readonly logs: string[];
  /** Sends `signal` (default SIGTERM) and waits for exit; resolves to the exit code. */
  stop(signal?: NodeJS.Signals): Promise<number | null>;
}

export interface ServiceProcessOptions {
  /** Extra environment; the host, port and metrics port are set already. */
  env?: NodeJS.ProcessEnv;
  /** The gRPC port; default a free one. Give the old port to restart a service in place. */
  port?: number;
  /** Options for node itself (`--cpu-prof`, say), which NODE_OPTIONS cannot carry. */
  nodeArgs?: string[];
}

/**
 * This process's environment without the platform's tokens: a service under
 * test takes them from its segment directory, where the test reads them too,
 * unless the test gives them explicitly.
 */
function inheritedEnv(): NodeJS.ProcessEnv {
  const { [ADMIN_TOKEN_ENV]: _admin, [PLATFORM_TOKEN_ENV]: _platform, ...rest } = process.env;
  return rest;
}

/** A port nobody listens on right now. */
export async function freePort(): Promise<number> {
  const server = net.createServer();
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as net.AddressInfo;
  await new Promise<void>((resolve) => server.close(() => resolve()));
  return port;
}

/**
 * Starts `services/<service>/dist/main.js` on loopback and waits until its
 * grpc.health.v1 check answers SERVING. `prefix` is the service's
 * environment prefix (PCI_EMU, DMABUF_REGISTRY).
 */
export async function startServiceProcess(service: string, prefix: string, options: ServiceProcessOptions = {}): Promise<ServiceProcess> {
  const port = options.port ?? (await freePort());
  const child = spawn(process.execPath, [...(options.nodeArgs ?? []), serviceMain(service)], {
    env: { ...inheritedEnv(), [`${prefix}_HOST`]: '127.0.0.1', [`${prefix}_PORT`]: String(port), [`${prefix}_METRICS_PORT`]: '0', ...options.env },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  const logs: string[] = [];
  const exited = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)));
  readline.createInterface({ input: child.stdout! }).on('line', (line) => logs.push(line));
  child.stderr!.on('data', (chunk: Buffer) => logs.push(chunk.toString()));
  const address = `127.0.0.1:${port}`;
  const stop = async (signal: NodeJS.Signals = 'SIGTERM'): Promise<number | null> => {
    if (child.exitCode === null && child.signalCode === null) child.kill(signal);
    return exited;
  };
  const deadline = Date.now() + 15_000;
  // A service under TLS is checked with its own certificate (also a client's), as its peers reach it.
  const tls = loadTlsConfig({ ...inheritedEnv(), ...options.env });
  while (!(await isServing(address, 1000, tls))) {
    if (child.exitCode !== null || child.signalCode !== null) throw new Error(`${service} exited before serving on ${address}:\n${logs.join('\n')}`);
    if (Date.now() > deadline) {
      await stop('SIGKILL');
      throw new Error(`${service} did not become SERVING on ${address} within 15 s:\n${logs.join('\n')}`);
    }
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
  return { child, port, address, logs, stop };
}
