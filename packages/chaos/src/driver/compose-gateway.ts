import { type ChildProcess, spawn } from 'node:child_process';
import * as http from 'node:http';
import { SERVICES, type ServiceName } from '../plan/schedule';
import { type CommandLine, dialAddress, GATEWAY_PORTS, GATEWAY_SEGMENTS_PORT, type GatewaySpec, gatewayRun, portCommand } from './compose-commands';
import type { SegmentFiles } from './segment-files';

/** How long the gateway container may take to say it is ready. */
const READY_TIMEOUT_MS = 30_000;
/**
 * Docker picks each published port from its ephemeral range without asking
 * whether a process of this host already holds it (a test's own services,
 * an outgoing connection): the start then fails with EADDRINUSE, and the
 * next start gets the next ports.
 */
const START_ATTEMPTS = 5;

export type Run = (command: CommandLine) => Promise<string>;

/**
 * The gateway container beside a compose project (compose-gateway-main.ts
 * runs in it): the host's stable address for each service, and the
 * segment volume's files over HTTP. Removed by close(), or by Docker
 * (`--rm`) once its stdin closes with this process.
 */
export class ComposeGateway {
  readonly #files: HttpSegmentFiles;
  readonly #child: ChildProcess;
  readonly #run: Run;

  private constructor(
    readonly name: string,
    readonly addresses: ReadonlyMap<ServiceName, string>,
    files: HttpSegmentFiles,
    child: ChildProcess,
    run: Run,
  ) {
    this.#files = files;
    this.#child = child;
    this.#run = run;
  }

  get segments(): SegmentFiles {
    return this.#files;
  }

  static async start(spec: GatewaySpec, run: Run): Promise<ComposeGateway> {
    for (let attempt = 1; ; attempt++) {
      try {
        return await ComposeGateway.#startOnce(spec, run);
      } catch (error) {
        if (attempt >= START_ATTEMPTS || !/address already in use/.test((error as Error).message)) throw error;
      }
    }
  }

  static async #startOnce(spec: GatewaySpec, run: Run): Promise<ComposeGateway> {
    const command = gatewayRun(spec);
    const child = spawn(command.program, [...command.args], { stdio: ['pipe', 'pipe', 'pipe'] });
    try {
      await ready(child);
      const addresses = new Map<ServiceName, string>();
      for (const service of SERVICES) addresses.set(service, dialAddress(await run(portCommand(spec.name, GATEWAY_PORTS[service]))));
      const segmentsAddress = dialAddress(await run(portCommand(spec.name, GATEWAY_SEGMENTS_PORT)));
      return new ComposeGateway(spec.name, addresses, httpSegmentFiles(segmentsAddress, spec.token), child, run);
    } catch (error) {
      child.stdin?.end();
      await run({ program: 'docker', args: ['rm', '-f', spec.name] }).catch(() => undefined);
      throw error;
    }
  }

  /** The administrator's token as the services wrote it on the volume (when compose was given none). */
  adminToken(): Promise<string | undefined> {
    return this.#files.adminToken();
  }

  async close(): Promise<void> {
    const exited = new Promise<void>((resolve) => (this.#child.exitCode !== null ? resolve() : this.#child.once('exit', () => resolve())));
    this.#child.stdin?.end();
    const timer = setTimeout(() => void this.#run({ program: 'docker', args: ['rm', '-f', this.name] }).catch(() => undefined), 10_000);
    await exited;
    clearTimeout(timer);
  }
}

function ready(child: ChildProcess): Promise<void> {
  return new Promise((resolve, reject) => {
    let stderr = '';
    let stdout = '';
    const timer = setTimeout(() => reject(new Error(`the compose gateway did not start within ${READY_TIMEOUT_MS} ms: ${stderr.trim()}`)), READY_TIMEOUT_MS);
    child.stderr?.on('data', (chunk: Buffer) => (stderr += chunk.toString()));
    child.stdout?.on('data', (chunk: Buffer) => {
      stdout += chunk.toString();
      if (stdout.includes('gateway ready\n')) {
        clearTimeout(timer);
        resolve();
      }
    });
    child.once('error', (error) => {
      clearTimeout(timer);
      reject(error);
    });
    child.once('exit', (code) => {
      clearTimeout(timer);
      // The image predates the gateway: its packages/chaos/dist has no compose-gateway-main.js.
      const hint = /Cannot find module/.test(stderr) ? ' (build the workspace and the image again: npm run build, then docker compose up --build)' : '';
      reject(new Error(`the compose gateway exited (status ${code}) before it was ready: ${stderr.trim().split('\n').slice(-3).join(' ')}${hint}`));
    });
  });
}

interface HttpSegmentFiles extends SegmentFiles {
  adminToken(): Promise<string | undefined>;
}

function httpSegmentFiles(address: string, token: string): HttpSegmentFiles {
  const get = (path: string): Promise<{ status: number; body: Buffer }> =>
    new Promise((resolve, reject) => {
      const request = http.get(`http://${address}${path}`, { headers: { authorization: `Bearer ${token}` }, timeout: 10_000 }, (response) => {
        const chunks: Buffer[] = [];
        response.on('data', (chunk: Buffer) => chunks.push(chunk));
        response.on('end', () => resolve({ status: response.statusCode ?? 0, body: Buffer.concat(chunks) }));
        response.on('error', reject);
      });
      request.on('timeout', () => request.destroy(new Error(`ETIMEDOUT: GET ${path} from the compose gateway`)));
      request.on('error', reject);
    });
  const ok = async (path: string): Promise<Buffer> => {
    const { status, body } = await get(path);
    if (status !== 200) throw new Error(`the compose gateway answered ${status} to GET ${path}: ${body.toString()}`);
    return body;
  };
  return {
    read: (name, offset, length) => ok(`/segments/${encodeURIComponent(name)}?offset=${offset}&length=${length}`),
    list: async () => JSON.parse((await ok('/segments')).toString()) as string[],
    adminToken: async () => {
      const { status, body } = await get('/admin-token');
      return status === 200 ? body.toString() : undefined;
    },
  };
}
