import { randomBytes } from 'node:crypto';
import * as net from 'node:net';
import * as tls from 'node:tls';
import { servesTls, type TlsConfig } from '@p2p/auth';
import { errno } from '@p2p/errno';
import type { Logger } from 'pino';
import { Fifo } from './fifo';
import { gather } from './gather';

/** Bytes of the one-time token a connector sends first on a bulk stream. */
export const BULK_TOKEN_BYTES = 32;

/** A connection that has not presented a token within this is closed. */
const TOKEN_TIMEOUT_MS = 5_000;

/** Connections the listener holds at once, links and connections still presenting their token alike. */
const MAX_CONNECTIONS = 4096;

/**
 * Received bytes a stream buffers before it stops reading the socket (TCP's
 * window then holds the sender back), unless the packet the link waits for
 * needs more: a message is as large as IBA allows (2^31 bytes), and its
 * bytes must all be in before it runs.
 */
const RX_HIGH_WATER_BYTES = 16 * 1024 * 1024;

/** How a take() went: the payload's views, not all there yet, or not at the position the packet names. */
export type TakeOutcome = 'ok' | 'wait' | 'misplaced';

/** What a bulk stream tells its link. */
export interface BulkEvents {
  /** The bytes the link waits for (see take) are all in. */
  ready(): void;
  /** The connection is gone (either side closed it, or it failed). Called once. */
  closed(reason: string): void;
}

/**
 * The bulk side channel of a link between two NICs that share no memory
 * (hosts on different tmpfs): one TCP connection, TLS when the wire is,
 * carrying payload bytes both ways while the packets that place them stay
 * on the link's gRPC stream. Each side writes the payloads in the order it
 * puts their packets on the link, and a packet names where its payload
 * starts in the stream (cumulative modulo 2^32), so the receiver, running
 * packets in order, takes the bytes in order and checks they are the ones
 * the packet means.
 *
 * The stream adds no reliability of its own: like the link's stream it is
 * reliable and ordered, and when it fails the link closes with it, so the
 * requester's transport timer and retransmission (on a new link) apply to
 * every request as before.
 */
export class BulkChannel {
  readonly #socket: net.Socket;
  #events: BulkEvents | undefined;
  #sent = 0;
  #taken = 0;
  readonly #chunks = new Fifo<Buffer>();
  #headOffset = 0;
  #buffered = 0;
  /** Bytes the link waits for, 0 when it does not wait. */
  #want = 0;
  #paused = false;
  #closed = false;

  private constructor(socket: net.Socket, leftover: Buffer | undefined) {
    this.#socket = socket;
    socket.setNoDelay(true);
    if (leftover !== undefined && leftover.length > 0) this.#received(leftover);
    socket.on('data', (chunk: Buffer) => this.#received(chunk));
    socket.on('error', (error: Error) => this.#gone(`failed: ${error.message}`));
    socket.on('close', () => this.#gone('closed by the peer'));
  }

  /**
   * Dials a bulk stream (`host` unbracketed) and presents `token`. Resolves
   * once connected (and, with TLS, the server's certificate verified
   * against the CA, naming `serverName`); ECONNREFUSED, ETIMEDOUT or the
   * TLS error otherwise.
   */
  static connect(host: string, port: number, token: Uint8Array, config: TlsConfig, serverName: string, timeoutMs: number): Promise<BulkChannel> {
    return new Promise((resolve, reject) => {
      const socket =
        config.ca === undefined
          ? net.connect({ host, port })
          : tls.connect({
              host,
              port,
              ca: config.ca,
              cert: config.cert,
              key: config.key,
              servername: config.serverName ?? serverName,
              checkServerIdentity: (_host, cert) => tls.checkServerIdentity(config.serverName ?? serverName, cert),
            });
      const timer = setTimeout(() => fail(errno('ETIMEDOUT', `no bulk stream to ${host}:${port} within ${timeoutMs} ms`)), timeoutMs);
      const fail = (error: Error): void => {
        clearTimeout(timer);
        socket.destroy();
        reject(error);
      };
      socket.once('error', fail);
      socket.once(config.ca === undefined ? 'connect' : 'secureConnect', () => {
        clearTimeout(timer);
        socket.off('error', fail);
        socket.write(token);
        resolve(new BulkChannel(socket, undefined));
      });
    });
  }

  /** A connection the listener took, with the bytes that came after its token. */
  static accepted(socket: net.Socket, leftover: Buffer): BulkChannel {
    return new BulkChannel(socket, leftover);
  }

  /** The link that owns this stream; bytes that came before are kept for it. */
  bind(events: BulkEvents): void {
    this.#events = events;
    if (this.#closed) events.closed('closed before its link took it');
  }

  /**
   * Writes a payload (a copy of `views`, or `owned`, a Buffer the caller
   * gives away); returns the stream position where it starts: the packet's
   * locator.
   */
  write(views: readonly Uint8Array[], length: number, owned?: Buffer): number {
    const at = this.#sent;
    this.#sent = (at + length) >>> 0;
    if (!this.#closed) this.#socket.write(owned ?? gather(views, length));
    return at;
  }

  /**
   * The `bytes` of payload at stream position `locator`, as views appended
   * to `out`: 'wait' when they are not all in yet (events.ready() says when
   * they are), 'misplaced' when the stream is elsewhere (a protocol error).
   */
  take(locator: number, bytes: number, out: Uint8Array[]): TakeOutcome {
    if (locator !== this.#taken) return 'misplaced';
    if (this.#buffered < bytes) {
      this.#want = bytes;
      if (this.#paused && this.#buffered < Math.max(bytes, RX_HIGH_WATER_BYTES)) this.#resume();
      return 'wait';
    }
    this.#want = 0;
    let left = bytes;
    while (left > 0) {
      const head = this.#chunks.peek() as Buffer;
      const n = Math.min(head.length - this.#headOffset, left);
      out.push(head.subarray(this.#headOffset, this.#headOffset + n));
      this.#headOffset += n;
      left -= n;
      if (this.#headOffset === head.length) {
        this.#chunks.shift();
        this.#headOffset = 0;
      }
    }
    this.#buffered -= bytes;
    this.#taken = (this.#taken + bytes) >>> 0;
    if (this.#paused && this.#buffered < RX_HIGH_WATER_BYTES) this.#resume();
    return 'ok';
  }

  /** Closes the connection; nothing is reported to the link. */
  destroy(): void {
    this.#closed = true;
    this.#events = undefined;
    this.#chunks.drain();
    this.#buffered = 0;
    this.#socket.destroy();
  }

  #received(chunk: Buffer): void {
    if (this.#closed) return;
    this.#chunks.push(chunk);
    this.#buffered += chunk.length;
    if (this.#buffered >= Math.max(this.#want, RX_HIGH_WATER_BYTES) && !this.#paused) {
      this.#paused = true;
      this.#socket.pause();
    }
    if (this.#want > 0 && this.#buffered >= this.#want) {
      this.#want = 0;
      this.#events?.ready();
    }
  }

  #resume(): void {
    this.#paused = false;
    this.#socket.resume();
  }

  #gone(reason: string): void {
    if (this.#closed) return;
    this.#closed = true;
    this.#socket.destroy();
    const events = this.#events;
    this.#events = undefined;
    events?.closed(reason);
  }
}

/** An offer of a bulk stream to one connector: the token it must present, and the stream once it did. */
export interface BulkOffer {
  readonly port: number;
  readonly token: Buffer;
  /** The stream, once the connector presented the token; undefined if the offer was cancelled first. */
  readonly channel: Promise<BulkChannel | undefined>;
  /** Withdraws the offer (the link closed, or the connector said it could not dial). */
  cancel(): void;
}

interface OpenOffer {
  resolve(channel: BulkChannel | undefined): void;
}

/**
 * A NIC's listener for bulk streams, on its GID's address: a connection is
 * taken only with the token of an offer this NIC made in a link's hello
 * (one-time, 32 random bytes), so only the NIC that link's handshake spoke
 * with gets it; with TLS, the connector's certificate is checked too
 * (mutual TLS, as on the wire's gRPC server).
 */
export class BulkListener {
  readonly #server: net.Server;
  readonly #offers = new Map<string, OpenOffer>();
  /** Connections that have not presented their token yet. */
  readonly #unproven = new Set<net.Socket>();
  readonly #logger: Logger | undefined;
  #port = 0;

  private constructor(config: TlsConfig, logger: Logger | undefined) {
    this.#logger = logger;
    const onSocket = (socket: net.Socket): void => this.#connection(socket);
    this.#server = servesTls(config)
      ? tls.createServer({ cert: config.cert, key: config.key, ca: config.ca, requestCert: config.ca !== undefined, rejectUnauthorized: true }, onSocket)
      : net.createServer(onSocket);
    this.#server.maxConnections = MAX_CONNECTIONS;
    // A TLS handshake that fails is the connector's problem, not this process's.
    this.#server.on('tlsClientError', (error: Error) => logger?.debug({ err: error }, 'wire: bulk stream TLS handshake failed'));
  }

  /** Listens on `host` (unbracketed) and `port` (0: any free one). EBUSY if it cannot. */
  static async start(host: string, port: number, config: TlsConfig, logger: Logger | undefined): Promise<BulkListener> {
    const listener = new BulkListener(config, logger);
    await new Promise<void>((resolve, reject) => {
      listener.#server.once('error', (error: Error) => reject(errno('EBUSY', `cannot serve bulk streams on ${host}:${port}: ${error.message}`)));
      listener.#server.listen({ host, port }, () => resolve());
    });
    listener.#port = (listener.#server.address() as net.AddressInfo).port;
    return listener;
  }

  get port(): number {
    return this.#port;
  }

  /** A one-time offer for a link's hello. */
  offer(): BulkOffer {
    const token = randomBytes(BULK_TOKEN_BYTES);
    const key = token.toString('hex');
    let resolve!: (channel: BulkChannel | undefined) => void;
    const channel = new Promise<BulkChannel | undefined>((r) => (resolve = r));
    this.#offers.set(key, { resolve });
    return {
      port: this.#port,
      token,
      channel,
      cancel: () => {
        if (this.#offers.delete(key)) resolve(undefined);
      },
    };
  }

  /** Stops listening, closes what has not presented a token, withdraws every offer. */
  async close(): Promise<void> {
    for (const offer of this.#offers.values()) offer.resolve(undefined);
    this.#offers.clear();
    for (const socket of this.#unproven) socket.destroy();
    this.#unproven.clear();
    await new Promise<void>((resolve) => this.#server.close(() => resolve()));
  }

  #connection(socket: net.Socket): void {
    const parts: Buffer[] = [];
    let length = 0;
    this.#unproven.add(socket);
    const timer = setTimeout(() => socket.destroy(), TOKEN_TIMEOUT_MS);
    const onClose = (): void => {
      clearTimeout(timer);
      this.#unproven.delete(socket);
    };
    const onData = (chunk: Buffer): void => {
      parts.push(chunk);
      length += chunk.length;
      if (length < BULK_TOKEN_BYTES) return;
      onClose();
      socket.off('data', onData);
      socket.off('close', onClose);
      socket.off('error', onClose);
      socket.pause();
      const received = Buffer.concat(parts, length);
      const offer = this.#offers.get(received.subarray(0, BULK_TOKEN_BYTES).toString('hex'));
      if (offer === undefined) {
        this.#logger?.warn({ from: socket.remoteAddress }, 'wire: a bulk stream with a token no link offered; closed');
        socket.destroy();
        return;
      }
      this.#offers.delete(received.subarray(0, BULK_TOKEN_BYTES).toString('hex'));
      const channel = BulkChannel.accepted(socket, received.subarray(BULK_TOKEN_BYTES));
      socket.resume();
      offer.resolve(channel);
    };
    socket.on('data', onData);
    socket.on('close', onClose);
    // An error is followed by 'close'; without a listener it would throw.
    socket.on('error', onClose);
  }
}
