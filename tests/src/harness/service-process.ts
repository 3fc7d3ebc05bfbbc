import { type ChildProcess, spawn } from 'node:child_process';
import * as net from 'node:net';
import * as path from 'node:path';
import * as readline from 'node:readline';
import { healthCheck } from './generic-clients';

const REPO_ROOT = path.resolve(__dirname, '..', '..', '..');

/** A service running as its own process, as it would in production. */
export interface ServiceProcess {
  readonly child: ChildProcess;
  readonly port: number;
  readonly address: string;
  /** Log lines (pino JSON) seen so far. */
  readonly logs: string[];
  /** SIGTERM and wait for exit; resolves to the exit code. */
  stop(signal?: NodeJS.Signals): Promise<number | null>;
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
 * Starts `services/<service>/dist/main.js` with `env` and waits until its
 * grpc.health.v1 check answers SERVING. `prefix` is the service's environment prefix (PCI_EMU).
 */
export async function startServiceProcess(service: string, prefix: string, env: NodeJS.ProcessEnv = {}): Promise<ServiceProcess> {
  const port = await freePort();
  const child = spawn(process.execPath, [path.join(REPO_ROOT, 'services', service, 'dist', 'main.js')], {
    env: { ...process.env, [`${prefix}_HOST`]: '127.0.0.1', [`${prefix}_PORT`]: String(port), [`${prefix}_METRICS_PORT`]: '0', ...env },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  const logs: string[] = [];
  const exited = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)));
  readline.createInterface({ input: child.stdout! }).on('line', (line) => logs.push(line));
  child.stderr!.on('data', (chunk: Buffer) => logs.push(chunk.toString()));
  let gone = false;
  void exited.then(() => (gone = true));
  const deadline = Date.now() + 15_000;
  for (;;) {
    if (gone) throw new Error(`${service} exited before serving:\n${logs.join('\n')}`);
    if (await healthCheck(`127.0.0.1:${port}`).then((status) => status === 'SERVING', () => false)) break;
    if (Date.now() > deadline) {
      child.kill('SIGKILL');
      throw new Error(`${service} did not become SERVING within 15 s:\n${logs.join('\n')}`);
    }
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
  return {
    child,
    port,
    address: `127.0.0.1:${port}`,
    logs,
    stop: async (signal = 'SIGTERM') => {
      if (child.exitCode === null && child.signalCode === null) child.kill(signal);
      return exited;
    },
  };
}
