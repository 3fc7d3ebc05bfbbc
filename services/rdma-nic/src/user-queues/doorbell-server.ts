import * as fs from 'node:fs';
import * as net from 'node:net';
import { errno } from '@p2p/errno';
import { MAX_SOCKET_PATH } from '@p2p/shm';
import { userQueues } from '@p2p/verbs';
import { TurnPoller } from '../turn-poller';
import type { UserContext } from './user-context';

const { WAKE_KEY_BYTES } = userQueues;

/** Bytes a connection may send before its key: the key itself. */
const HELLO_TIMEOUT_MS = 5000;

/**
 * The doorbell socket: a Unix stream socket of the NIC in the segment
 * directory. A process connects, sends its context's wake key, then one
 * byte per wake-up; the NIC sends completion events back. A connection
 * whose key names no context is closed.
 */
export class DoorbellServer {
  readonly path: string;
  readonly #server: net.Server;
  readonly #contexts = new Map<string, UserContext>();
  readonly poller = new TurnPoller<UserContext>();

  private constructor(socketPath: string, server: net.Server) {
    this.path = socketPath;
    this.#server = server;
    server.on('connection', (socket) => this.#accept(socket));
  }

  /** EINVAL, as bind() answers, for a path sun_path cannot hold (Node would bind a truncated one). */
  static async listen(socketPath: string): Promise<DoorbellServer> {
    if (Buffer.byteLength(socketPath) > MAX_SOCKET_PATH) throw errno('EINVAL', `the doorbell socket ${socketPath} exceeds ${MAX_SOCKET_PATH} bytes: use a shorter segment directory`);
    fs.rmSync(socketPath, { force: true });
    const server = net.createServer();
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen(socketPath, () => {
        server.off('error', reject);
        resolve();
      });
    });
    return new DoorbellServer(socketPath, server);
  }

  add(context: UserContext): void {
    this.#contexts.set(context.key.toString('hex'), context);
  }

  remove(context: UserContext): void {
    this.#contexts.delete(context.key.toString('hex'));
    this.poller.forget(context);
    context.close();
  }

  #accept(socket: net.Socket): void {
    socket.setNoDelay?.(true);
    let hello = Buffer.alloc(0);
    let context: UserContext | undefined;
    const timer = setTimeout(() => socket.destroy(), HELLO_TIMEOUT_MS);
    socket.on('error', () => socket.destroy());
    socket.on('close', () => clearTimeout(timer));
    socket.on('data', (chunk: Buffer) => {
      if (context === undefined) {
        hello = Buffer.concat([hello, chunk]);
        if (hello.length < WAKE_KEY_BYTES) return;
        clearTimeout(timer);
        context = this.#contexts.get(hello.subarray(0, WAKE_KEY_BYTES).toString('hex'));
        if (context === undefined) {
          socket.destroy();
          return;
        }
        context.connect(socket);
        if (hello.length === WAKE_KEY_BYTES) return;
      }
      // Every byte after the key is a wake-up; a burst of them is one.
      this.poller.wake(context);
    });
  }

  close(): Promise<void> {
    for (const context of this.#contexts.values()) context.close();
    this.#contexts.clear();
    return new Promise((resolve) => this.#server.close(() => resolve()));
  }
}
