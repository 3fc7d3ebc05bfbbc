import { type ChildProcess, spawn } from 'node:child_process';
import * as fs from 'node:fs';
import * as net from 'node:net';
import * as path from 'node:path';
import { Client, credentials } from '@grpc/grpc-js';

/** services/dmabuf-registry's entry point, built by `npx tsc -b` at the repository root. */
export const REGISTRY_MAIN = path.resolve(__dirname, '..', '..', '..', '..', 'services', 'dmabuf-registry', 'dist', 'main.js');

/** A dmabuf-registry running as its own process, as in production. */
export interface RegistryProcess {
  readonly child: ChildProcess;
  readonly address: string;
  /** Its P2P_SHM_DIR: a fresh directory under /dev/shm, removed by stop(). */
  readonly shmDir: string;
  /** stdout and stderr lines so far, for failure messages. */
  readonly logs: string[];
  /** Sends `signal` (default SIGTERM), waits for exit, removes shmDir. */
  stop(signal?: NodeJS.Signals): Promise<void>;
}

export interface RegistryProcessOptions {
  /** DMABUF_REGISTRY_ACK_TIMEOUT_MS: how long importers have to ack a move_notify. */
  readonly ackTimeoutMs?: number;
}

/**
 * Starts the registry on a free loopback port with a fresh segment directory
 * and waits until grpc.health.v1 answers SERVING (the pattern of
 * tests/src/harness/service-process.ts, without its dependencies).
 */
export async function startRegistry(options: RegistryProcessOptions = {}): Promise<RegistryProcess> {
  const port = await freePort();
  const shmDir = fs.mkdtempSync('/dev/shm/p2p-dmabuf-client-');
  const child = spawn(process.execPath, [REGISTRY_MAIN], {
    env: {
      ...process.env,
      DMABUF_REGISTRY_HOST: '127.0.0.1',
      DMABUF_REGISTRY_PORT: String(port),
      DMABUF_REGISTRY_METRICS_PORT: '-1',
      DMABUF_REGISTRY_ACK_TIMEOUT_MS: String(options.ackTimeoutMs ?? 2000),
      P2P_SHM_DIR: shmDir,
    },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  const logs: string[] = [];
  child.stdout?.on('data', (chunk: Buffer) => logs.push(chunk.toString()));
  child.stderr?.on('data', (chunk: Buffer) => logs.push(chunk.toString()));
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
  const address = `127.0.0.1:${port}`;
  const stop = async (signal: NodeJS.Signals = 'SIGTERM'): Promise<void> => {
    if (child.exitCode === null && child.signalCode === null) child.kill(signal);
    await exited;
    fs.rmSync(shmDir, { recursive: true, force: true });
  };
  const deadline = Date.now() + 15_000;
  while (!(await serving(address))) {
    if (child.exitCode !== null || child.signalCode !== null || Date.now() > deadline) {
      await stop('SIGKILL');
      throw new Error(`dmabuf-registry did not become SERVING:\n${logs.join('')}`);
    }
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
  return { child, address, shmDir, logs, stop };
}

/** A port nobody listens on right now. */
async function freePort(): Promise<number> {
  const server = net.createServer();
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as net.AddressInfo;
  await new Promise<void>((resolve) => server.close(() => resolve()));
  return port;
}

/**
 * grpc.health.v1.Health/Check for the whole server. The messages are tiny
 * enough to encode by hand: the request is empty, and the answer SERVING is
 * field 1 (varint) = 1, i.e. the bytes 08 01.
 */
function serving(address: string): Promise<boolean> {
  const client = new Client(address, credentials.createInsecure());
  return new Promise<boolean>((resolve) => {
    client.makeUnaryRequest<Buffer, Buffer>(
      '/grpc.health.v1.Health/Check',
      (request) => request,
      (response) => response,
      Buffer.alloc(0),
      { deadline: Date.now() + 1000 },
      (error, response) => resolve(!error && response !== undefined && response.equals(Buffer.from([0x08, 0x01]))),
    );
  }).finally(() => client.close());
}
