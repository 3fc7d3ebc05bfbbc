import { type ChildProcess, spawn } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';
import * as readline from 'node:readline';
import type { ClientReadableStream } from '@grpc/grpc-js';
import { type OwnerCallInfo, SharedMemoryExporter } from '@p2p/dmabuf-client';
import { ErrnoError, type ErrnoName } from '@p2p/errno';
import { dmabuf } from '@p2p/proto';
import { listSegmentFiles } from '@p2p/shm';
import { errnoOf } from '@p2p/status';
import { rpc } from '../harness/rpc';
import { asAdmin, eventually, type ServiceProcess, startServiceProcess } from '@p2p/testing';
export { eventually, rejection } from '@p2p/testing';

/** The registry's environment for a test: segment directory, ack deadline, quiet logs. */
function registryEnv(shmDir: string, ackTimeoutMs: number): NodeJS.ProcessEnv {
  return { P2P_SHM_DIR: shmDir, DMABUF_REGISTRY_ACK_TIMEOUT_MS: String(ackTimeoutMs), LOG_LEVEL: 'warn' };
}

/** dmabuf-registry as its own process, on `port` (a restart in place) or a free one. */
export function startRegistry(shmDir: string, ackTimeoutMs: number, port?: number): Promise<ServiceProcess> {
  return startServiceProcess('dmabuf-registry', 'DMABUF_REGISTRY', { env: registryEnv(shmDir, ackTimeoutMs), port });
}

/** A client of the registry as the administrator of the platform on `shmDir`: it may name any process, and see every one. */
export function rawClient(address: string, shmDir: string): dmabuf.DmaBufRegistryServiceClient {
  const admin = asAdmin(shmDir);
  return new dmabuf.DmaBufRegistryServiceClient(address, admin.credentials, admin.options);
}

export const sleep = (ms: number): Promise<void> => new Promise((resolve) => setTimeout(resolve, ms));

/** The errno of a library error (ErrnoError) or of a gRPC error (from its status). */
export function errnoName(error: unknown): ErrnoName | undefined {
  return error instanceof ErrnoError ? error.errno : errnoOf(error);
}

/** The names of the segment files in `dir`: the memory of live buffers. */
export function segmentNames(dir: string): string[] {
  return listSegmentFiles(dir).map((info) => info.name);
}

/** GetBufInfo and ListProcesses together: what a leak would show in. */
export async function registryState(client: dmabuf.DmaBufRegistryServiceClient): Promise<{ buffers: dmabuf.BufInfo[]; processes: dmabuf.ListProcessesResponse }> {
  const [info, processes] = await Promise.all([
    rpc<dmabuf.GetBufInfoResponse>((cb) => client.getBufInfo({}, cb)),
    rpc<dmabuf.ListProcessesResponse>((cb) => client.listProcesses({}, cb)),
  ]);
  return { buffers: info.buffers, processes };
}

/** /proc/<pid>/stat's state letter: 'T' once SIGSTOP has taken effect. */
export function processState(pid: number): string | undefined {
  try {
    const stat = fs.readFileSync(`/proc/${pid}/stat`, 'utf8');
    // The name in parentheses may contain spaces; the state follows the last ')'.
    return stat.slice(stat.lastIndexOf(')') + 2).split(' ')[0];
  } catch {
    return undefined;
  }
}

/** A SharedMemoryExporter that counts its releases and fences by handle. */
export class CountingExporter extends SharedMemoryExporter {
  readonly releases: string[] = [];
  readonly fences: string[] = [];

  override release(call: OwnerCallInfo): void {
    this.releases.push(call.handle ?? `file ${call.fileId}`);
    super.release(call);
  }

  override fence(call: OwnerCallInfo): void {
    this.fences.push(call.handle ?? `file ${call.fileId}`);
    super.fence(call);
  }
}

/** A JSON line of a helper process: an answer to a command, or an unsolicited event. */
export interface Reply {
  readonly ok?: boolean;
  readonly event?: string;
  readonly errno?: ErrnoName;
  readonly message?: string;
  readonly [key: string]: unknown;
}

/**
 * A helper process of tests/src/dmabuf-registry/processes, spoken to one
 * command line at a time; every command gets one JSON answer line, in order.
 */
export class HelperProcess {
  readonly child: ChildProcess;
  readonly stderr: string[] = [];
  readonly exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
  readonly #waiters: Array<{ resolve: (reply: Reply) => void; reject: (error: Error) => void }> = [];
  readonly #ready: Promise<Reply>;

  private constructor(file: string, args: string[]) {
    const script = path.basename(file, '.js');
    this.child = spawn(process.execPath, [file, ...args], { stdio: ['pipe', 'pipe', 'pipe'] });
    this.child.stderr!.on('data', (chunk: Buffer) => this.stderr.push(chunk.toString()));
    this.exited = new Promise((resolve) => this.child.once('exit', (code, signal) => resolve({ code, signal })));
    let readyResolve: (reply: Reply) => void = () => undefined;
    this.#ready = new Promise((resolve) => (readyResolve = resolve));
    readline.createInterface({ input: this.child.stdout! }).on('line', (line) => {
      let reply: Reply;
      try {
        reply = JSON.parse(line) as Reply;
      } catch {
        this.stderr.push(`(stdout) ${line}\n`);
        return;
      }
      if (reply.event === 'ready') readyResolve(reply);
      else this.#waiters.shift()?.resolve(reply);
    });
    void this.exited.then(({ code, signal }) => {
      for (const waiter of this.#waiters.splice(0)) waiter.reject(new Error(`helper ${script} exited (code ${code}, signal ${signal}):\n${this.stderr.join('')}`));
    });
  }

  /** Spawns tests/dist/dmabuf-registry/processes/<script>.js and waits for its ready line. */
  static start(script: 'importer' | 'exporter', args: string[], timeoutMs = 10_000): Promise<{ helper: HelperProcess; ready: Reply }> {
    return HelperProcess.startFile(path.join(__dirname, 'processes', `${script}.js`), args, timeoutMs);
  }

  /** Spawns the helper script `file` (a built .js speaking the same protocol) and waits for its ready line. */
  static async startFile(file: string, args: string[], timeoutMs = 10_000): Promise<{ helper: HelperProcess; ready: Reply }> {
    const script = path.basename(file, '.js');
    const helper = new HelperProcess(file, args);
    let timer: NodeJS.Timeout | undefined;
    try {
      const ready = await Promise.race([
        helper.#ready,
        helper.exited.then(({ code }) => Promise.reject(new Error(`helper ${script} exited with ${code} before ready:\n${helper.stderr.join('')}`))),
        new Promise<never>((_resolve, reject) => {
          timer = setTimeout(() => reject(new Error(`helper ${script} not ready within ${timeoutMs} ms:\n${helper.stderr.join('')}`)), timeoutMs);
        }),
      ]);
      return { helper, ready };
    } catch (error) {
      await helper.kill();
      throw error;
    } finally {
      clearTimeout(timer);
    }
  }

  get pid(): number {
    return this.child.pid!;
  }

  get alive(): boolean {
    return this.child.exitCode === null && this.child.signalCode === null;
  }

  /** Sends one command line; resolves with its answer (fails after `timeoutMs`). */
  command(line: string, timeoutMs = 5000): Promise<Reply> {
    return new Promise<Reply>((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`no answer to "${line}" within ${timeoutMs} ms:\n${this.stderr.join('')}`)), timeoutMs);
      this.#waiters.push({
        resolve: (reply) => {
          clearTimeout(timer);
          resolve(reply);
        },
        reject: (error) => {
          clearTimeout(timer);
          reject(error);
        },
      });
      this.child.stdin!.write(`${line}\n`);
    });
  }

  /** A command that must succeed. */
  async ok(line: string, timeoutMs?: number): Promise<Reply> {
    const reply = await this.command(line, timeoutMs);
    if (reply.ok !== true) throw new Error(`"${line}" failed: ${JSON.stringify(reply)}\n${this.stderr.join('')}`);
    return reply;
  }

  signal(signal: NodeJS.Signals): void {
    if (this.alive) this.child.kill(signal);
  }

  /** SIGKILL (it works on a stopped process too) and wait for the exit. */
  async kill(): Promise<void> {
    if (this.alive) {
      this.child.kill('SIGKILL');
    }
    await this.exited;
  }
}

/** WatchEvents, collected from the moment the registry has subscribed (its headers). */
export class EventLog {
  readonly events: dmabuf.WatchEventsResponse[] = [];
  readonly #client: dmabuf.DmaBufRegistryServiceClient;
  readonly #stream: ClientReadableStream<dmabuf.WatchEventsResponse>;

  private constructor(address: string, shmDir: string) {
    this.#client = rawClient(address, shmDir);
    this.#stream = this.#client.watchEvents({});
    this.#stream.on('data', (event: dmabuf.WatchEventsResponse) => this.events.push(event));
    // The stream ends with the test or the registry; neither is a failure here.
    this.#stream.on('error', () => undefined);
  }

  static async open(address: string, shmDir: string): Promise<EventLog> {
    const log = new EventLog(address, shmDir);
    await new Promise<void>((resolve, reject) => {
      log.#stream.once('metadata', () => resolve());
      log.#stream.once('error', reject);
    });
    return log;
  }

  of(kind: dmabuf.EventKind, match: Partial<Pick<dmabuf.WatchEventsResponse, 'bufferId' | 'attachmentId' | 'pid'>> = {}): dmabuf.WatchEventsResponse[] {
    return this.events.filter(
      (e) =>
        e.kind === kind &&
        (match.bufferId === undefined || e.bufferId === match.bufferId) &&
        (match.attachmentId === undefined || e.attachmentId === match.attachmentId) &&
        (match.pid === undefined || e.pid === match.pid),
    );
  }

  /** Waits until an event of `kind` matching `match` has been seen; returns the first. */
  async waitFor(kind: dmabuf.EventKind, match: Parameters<EventLog['of']>[1] = {}, timeoutMs = 5000): Promise<dmabuf.WatchEventsResponse> {
    await eventually(`a ${dmabuf.EventKind[kind]} event matching ${JSON.stringify(match, (_k, v: unknown) => (typeof v === 'bigint' ? `${v}` : v))}`, () => this.of(kind, match).length > 0, timeoutMs);
    return this.of(kind, match)[0]!;
  }

  close(): void {
    this.#stream.cancel();
    this.#client.close();
  }
}

/**
 * A process session spoken by hand (OpenSession without the library), for
 * what the library never sends: acks of notices it was never given.
 */
export class RawSession {
  readonly #stream: ReturnType<dmabuf.DmaBufRegistryServiceClient['openSession']>;
  readonly #messages: dmabuf.OpenSessionResponse[] = [];
  #ended = false;
  pid = 0;

  private constructor(client: dmabuf.DmaBufRegistryServiceClient) {
    this.#stream = client.openSession();
    this.#stream.on('data', (message: dmabuf.OpenSessionResponse) => this.#messages.push(message));
    this.#stream.on('error', () => (this.#ended = true));
    this.#stream.on('end', () => (this.#ended = true));
  }

  static async open(client: dmabuf.DmaBufRegistryServiceClient, name: string): Promise<RawSession> {
    const session = new RawSession(client);
    session.#stream.write({ request: { $case: 'hello', value: { name } } });
    const first = await session.next();
    if (first.response?.$case !== 'opened') throw new Error(`expected SessionOpened, got ${first.response?.$case}`);
    session.pid = first.response.value.pid;
    return session;
  }

  send(request: dmabuf.OpenSessionRequest): void {
    this.#stream.write(request);
  }

  /** The next message the registry sent on the stream. */
  async next(timeoutMs = 5000): Promise<dmabuf.OpenSessionResponse> {
    await eventually('a message on the session stream', () => this.#messages.length > 0 || this.#ended, timeoutMs);
    const message = this.#messages.shift();
    if (message === undefined) throw new Error('the session stream ended');
    return message;
  }

  /** Process exit: half-close, as the library's close() does. */
  close(): void {
    this.#stream.end();
  }
}
