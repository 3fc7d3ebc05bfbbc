import * as fs from 'node:fs';
import * as net from 'node:net';
import { runCli } from '../run';
import type { ModelProcess } from './model-process';
import { MAX_LINE_BYTES, parseRequest, type SessionInfo, type SessionResponse } from './session-protocol';

/**
 * A session's socket: runs command lines in its model process, one at a
 * time and in arrival order (as one process's system calls from a shell
 * are), answers what it is, and stops on request.
 */
export class SessionServer {
  readonly #server: net.Server;
  #queue: Promise<void> = Promise.resolve();
  #stopping = false;

  constructor(
    private readonly process: ModelProcess,
    private readonly info: SessionInfo,
    private readonly socket: string,
    /** Ends the session's process before a stop is answered (so its fds are closed when `stop` returns); then the daemon exits. */
    private readonly stop: { readonly before: () => Promise<void>; readonly after: () => void },
  ) {
    this.#server = net.createServer((connection) => this.#serve(connection));
  }

  /** Listens at the socket, mode 0600; a stale socket of a dead session is replaced. */
  listen(): Promise<void> {
    fs.rmSync(this.socket, { force: true });
    return new Promise((resolve, reject) => {
      this.#server.once('error', reject);
      this.#server.listen(this.socket, () => {
        fs.chmodSync(this.socket, 0o600);
        resolve();
      });
    });
  }

  close(): Promise<void> {
    fs.rmSync(this.socket, { force: true });
    return new Promise((resolve) => this.#server.close(() => resolve()));
  }

  #serve(connection: net.Socket): void {
    let buffered = '';
    connection.setEncoding('utf8');
    connection.on('error', () => connection.destroy());
    connection.on('data', (chunk: string) => {
      buffered += chunk;
      const end = buffered.indexOf('\n');
      if (end < 0) {
        if (buffered.length > MAX_LINE_BYTES) this.#answer(connection, { error: `EINVAL: a request line is at most ${MAX_LINE_BYTES} bytes` });
        return;
      }
      const line = buffered.slice(0, end);
      buffered = '';
      connection.pause();
      this.#queue = this.#queue.then(async () => this.#answer(connection, await this.#handle(line)));
    });
  }

  async #handle(line: string): Promise<SessionResponse> {
    try {
      const request = parseRequest(line);
      if ('info' in request) return { info: this.info };
      if ('stop' in request) {
        this.#stopping = true;
        await this.stop.before();
        return { stopped: true };
      }
      if (this.#stopping) return { error: 'ESHUTDOWN: the session is stopping' };
      let stdout = '';
      let stderr = '';
      const code = await runCli({
        argv: ['node', 'p2p', ...request.run],
        stdout: { write: (text) => void (stdout += text) },
        stderr: { write: (text) => void (stderr += text) },
        process: this.process,
      });
      return { result: { code, stdout, stderr } };
    } catch (error) {
      return { error: error instanceof Error ? error.message : String(error) };
    }
  }

  #answer(connection: net.Socket, response: SessionResponse): void {
    connection.end(`${JSON.stringify(response)}\n`);
    if ('stopped' in response) connection.once('close', () => this.stop.after());
  }
}
