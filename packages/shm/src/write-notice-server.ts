import * as fs from 'node:fs';
import * as net from 'node:net';
import { errno } from '@p2p/errno';
import { fsCall, fsErrno } from './fs-errno';
import { MAX_SOCKET_PATH } from './limits';
import { type WriteNotice, WriteNoticeDecoder } from './write-notice';

export interface WriteNoticeServerOptions {
  /** Connections served at once (default 64: one per NIC process, with room to spare); Node closes one past it as soon as it is accepted. */
  readonly maxConnections?: number;
  /** Where a failure of the notice handler goes; it never reaches the connection. */
  readonly report?: (error: unknown) => void;
}

const DEFAULT_MAX_CONNECTIONS = 64;

/**
 * The listening end of the write-notice socket: every whole record of every
 * connection goes to `onNotice`, in order. Each connection keeps at most one
 * partial record; a malformed one closes that connection and no other.
 */
export class WriteNoticeServer {
  readonly #server: net.Server;
  readonly #connections = new Set<net.Socket>();
  #inode: number | undefined;
  #closing: Promise<void> | undefined;

  private constructor(
    readonly socketPath: string,
    onNotice: (notice: WriteNotice) => void,
    options: WriteNoticeServerOptions,
  ) {
    const report = options.report ?? (() => undefined);
    this.#server = net.createServer((socket) => this.#serve(socket, onNotice, report));
    this.#server.maxConnections = options.maxConnections ?? DEFAULT_MAX_CONNECTIONS;
  }

  /**
   * Listens on `socketPath`. A socket already there is taken for a dead
   * predecessor's and replaced: the caller holds the directory's claim
   * (claimShmDir), so no live listener can own it. EEXIST if the name is
   * anything but a socket; EINVAL if the path is too long for sun_path.
   */
  static async listen(socketPath: string, onNotice: (notice: WriteNotice) => void, options: WriteNoticeServerOptions = {}): Promise<WriteNoticeServer> {
    if (Buffer.byteLength(socketPath) > MAX_SOCKET_PATH) {
      throw errno('EINVAL', `the write-notice socket ${socketPath} exceeds ${MAX_SOCKET_PATH} bytes: use a shorter segment directory`);
    }
    removeStaleSocket(socketPath);
    const listening = new WriteNoticeServer(socketPath, onNotice, options);
    const server = listening.#server;
    await new Promise<void>((resolve, reject) => {
      server.once('error', (error) => reject(fsErrno(error, `listen on ${socketPath}`)));
      server.listen(socketPath, () => resolve());
    });
    listening.#inode = fsCall(() => fs.lstatSync(socketPath), `lstat ${socketPath}`).ino;
    // After listening, an 'error' is an accept failure: the connecting writer's business.
    server.on('error', options.report ?? (() => undefined));
    // Notices are a side channel: they must not keep a process alive that has nothing else to do.
    server.unref();
    return listening;
  }

  /** Connections open now. */
  get connections(): number {
    return this.#connections.size;
  }

  /** Stops listening, closes every connection and unlinks the socket (if it is still this one). Later calls wait for the first. */
  close(): Promise<void> {
    this.#closing ??= new Promise<void>((resolve) => {
      if (inodeAt(this.socketPath) === this.#inode) fs.rmSync(this.socketPath, { force: true });
      for (const socket of this.#connections) socket.destroy();
      this.#server.close(() => resolve());
    });
    return this.#closing;
  }

  #serve(socket: net.Socket, onNotice: (notice: WriteNotice) => void, report: (error: unknown) => void): void {
    this.#connections.add(socket);
    socket.once('close', () => this.#connections.delete(socket));
    // A writer that hangs up mid-record is its own business.
    socket.on('error', () => socket.destroy());
    const decoder = new WriteNoticeDecoder();
    socket.on('data', (chunk: Buffer) => {
      let notices: WriteNotice[];
      try {
        notices = decoder.decode(chunk);
      } catch {
        socket.destroy();
        return;
      }
      for (const notice of notices) {
        try {
          onNotice(notice);
        } catch (error) {
          report(error);
        }
      }
    });
  }
}

/** Unlinks a socket left at `socketPath`; EEXIST for any other kind of file there. */
function removeStaleSocket(socketPath: string): void {
  let stat: fs.Stats;
  try {
    stat = fs.lstatSync(socketPath);
  } catch (error) {
    const failure = fsErrno(error, `lstat ${socketPath}`);
    if (failure.errno === 'ENOENT') return;
    throw failure;
  }
  if (!stat.isSocket()) throw errno('EEXIST', `${socketPath} exists and is no socket: refusing to replace it`);
  fsCall(() => fs.unlinkSync(socketPath), `unlink ${socketPath}`);
}

function inodeAt(file: string): number | undefined {
  try {
    return fs.lstatSync(file).ino;
  } catch {
    return undefined;
  }
}
