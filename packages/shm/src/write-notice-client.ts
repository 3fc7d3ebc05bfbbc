import * as net from 'node:net';
import { encodeWriteNotice, isValidWriteNotice } from './write-notice';

export interface WriteNoticeClientOptions {
  /**
   * Bytes a listener that does not read (stopped, overloaded) may leave
   * queued before further notices are dropped; default 64 KiB, some 300
   * notices.
   */
  readonly maxQueuedBytes?: number;
  /** After a failed connection, notices are dropped for this long before the next attempt; default 100 ms. */
  readonly retryAfterMs?: number;
}

const DEFAULT_MAX_QUEUED_BYTES = 64 * 1024;
const DEFAULT_RETRY_AFTER_MS = 100;

/**
 * The writer's end of the write-notice socket: notify() after a write is
 * complete. It sits in a data path (an RDMA responder between its memcpy
 * and its ACK), so it never throws, never waits and holds bounded memory:
 * it connects on first use and again after the listener went away, queues
 * what the socket cannot take yet up to maxQueuedBytes, and drops notices
 * while nobody listens, while it waits to retry, or past that bound. A
 * dropped notice loses no data, only the nudge: the next notice of the same
 * memory lets the device see every earlier write too.
 */
export class WriteNoticeClient {
  readonly #maxQueuedBytes: number;
  readonly #retryAfterMs: number;
  #socket: net.Socket | undefined;
  #failedAt = -Infinity;
  #closed = false;
  #sent = 0;
  #dropped = 0;

  constructor(
    readonly socketPath: string,
    options: WriteNoticeClientOptions = {},
  ) {
    this.#maxQueuedBytes = options.maxQueuedBytes ?? DEFAULT_MAX_QUEUED_BYTES;
    this.#retryAfterMs = options.retryAfterMs ?? DEFAULT_RETRY_AFTER_MS;
  }

  /** Notices handed to the socket (those queued behind a connection that then fails are lost all the same). */
  get sent(): number {
    return this.#sent;
  }

  /** Notices dropped: nobody listening, waiting to retry, the queue full, a malformed notice, or closed. */
  get dropped(): number {
    return this.#dropped;
  }

  /** Bytes [offset, offset + length) of `segment` were written and are in place. */
  notify(segment: string, offset: number, length: number): void {
    const socket = this.#closed || !isValidWriteNotice(segment, offset, length) ? undefined : this.#writable();
    if (socket === undefined || socket.writableLength > this.#maxQueuedBytes) {
      this.#dropped++;
      return;
    }
    socket.write(encodeWriteNotice({ segment, offset, length }));
    this.#sent++;
  }

  /** Drops the connection and every notice still queued; later notices are dropped. */
  close(): void {
    this.#closed = true;
    this.#socket?.destroy();
    this.#socket = undefined;
  }

  /** The connection, made now if there is none or the one there is can no longer be written (the listener hung up). */
  #writable(): net.Socket | undefined {
    const socket = this.#socket;
    if (socket !== undefined && socket.writable) return socket;
    if (socket !== undefined) this.#forget(socket);
    return this.#connect();
  }

  #connect(): net.Socket | undefined {
    if (performance.now() - this.#failedAt < this.#retryAfterMs) return undefined;
    const socket = net.createConnection(this.socketPath);
    // A NIC with nothing else to do must not be kept alive by its notices.
    socket.unref();
    // ENOENT or ECONNREFUSED (nobody listens), EPIPE or ECONNRESET (the
    // listener went away): what was queued is lost, and the next notice
    // after the pause connects again.
    socket.on('error', () => {
      this.#failedAt = performance.now();
      this.#forget(socket);
    });
    // The listener closed the connection (it shut down, or took a notice for
    // malformed): the next notice connects again.
    socket.on('close', () => this.#forget(socket));
    this.#socket = socket;
    return socket;
  }

  #forget(socket: net.Socket): void {
    socket.destroy();
    if (this.#socket === socket) this.#socket = undefined;
  }
}
