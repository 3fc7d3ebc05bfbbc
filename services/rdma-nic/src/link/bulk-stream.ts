import { randomBytes } from 'node:crypto';
import * as net from 'node:net';
import * as tls from 'node:tls';
import { servesTls, type TlsConfig } from '@p2p/auth';
import { errno } from '@p2p/errno';
import type { Logger } from 'pino';
import { copyAcross } from '../memory/copy';
import { MAX_MSG_SZ } from '../transport/requester';
import { MAX_RING_BYTES, MIN_RING_BYTES } from './ring';

/** Bytes of the one-time token a receiver sends first on a bulk stream, and all it sends. */
export const BULK_TOKEN_BYTES = 32;

/** A connection that has not presented its token within this is closed. */
const TOKEN_TIMEOUT_MS = 5_000;

/** Connections the listener holds at once, streams and connections still presenting their token alike. */
const MAX_CONNECTIONS = 4096;

/** At most this many bytes go into one read: one system call per message or so, not per 64 KiB. */
const READ_BYTES = 4 * 1024 * 1024;

/**
 * Bytes of written payload copies a sender keeps for reuse: the payload a
 * stream has in flight, up to a link's shared-memory ring's default size.
 * A fresh buffer per message costs its page faults every time, which
 * halved what a stream carried.
 */
const SEND_POOL_BYTES = 64 * 1024 * 1024;

/** How a take() went: the payload's views, not all there yet, or not at the position the packet names. */
export type TakeOutcome = 'ok' | 'wait' | 'misplaced';

/** What a bulk stream tells its link. */
export interface BulkEvents {
  /** The bytes the link waits for (see BulkReceiver.take) are all in. */
  ready(): void;
  /** The connection is gone (either side closed it, it failed, or the peer broke the protocol). Called once. */
  closed(reason: string): void;
}

/**
 * The bulk side channel of a link between two NICs that share no memory
 * (hosts on different tmpfs): payload bytes travel on TCP connections (TLS
 * when the wire is) while the packets that place them stay on the link's
 * gRPC stream. There is one connection each way, dialled by its receiver,
 * which reads straight into a ring of its own (`onread`: a read per
 * message rather than one per 64 KiB, and no buffer to collect), so it
 * costs the receiver what a raw TCP stream does plus the one copy into the
 * target memory.
 *
 * A sender writes the payloads in the order it puts their packets on the
 * link, and a packet names where its payload starts in the stream
 * (cumulative modulo 2^32): the receiver, running packets in order, takes
 * the bytes in order and checks they are the ones the packet means.
 *
 * The streams add no reliability of their own: like the link's gRPC stream
 * they are reliable and ordered, and when one fails the link closes with it,
 * so the requester's transport timer and retransmission (on a new link)
 * apply to every request as before.
 */
abstract class BulkStream {
  protected readonly socket: net.Socket;
  protected events: BulkEvents | undefined;
  protected closed = false;

  protected constructor(socket: net.Socket) {
    this.socket = socket;
    socket.setNoDelay(true);
    socket.on('error', (error: Error) => this.gone(`failed: ${error.message}`));
    socket.on('close', () => this.gone('closed by the peer'));
  }

  /** The link that owns this stream. */
  bind(events: BulkEvents): void {
    this.events = events;
    if (this.closed) events.closed('closed before its link took it');
  }

  /** Closes the connection; nothing is reported to the link. */
  destroy(): void {
    this.closed = true;
    this.events = undefined;
    this.socket.destroy();
  }

  protected gone(reason: string): void {
    if (this.closed) return;
    this.closed = true;
    this.socket.destroy();
    const events = this.events;
    this.events = undefined;
    events?.closed(reason);
  }
}

/** The sending end: the connection the peer dialled into this NIC's listener. */
export class BulkSender extends BulkStream {
  #sent = 0;
  readonly #spare = new Map<number, Buffer[]>();
  #spareBytes = 0;
  readonly #recycle = (copy: Buffer): void => {
    if (this.closed) return;
    // The sizes in use now win: copies of sizes written longer ago make room (Map order is first use).
    for (const [size, list] of this.#spare) {
      if (this.#spareBytes + copy.length <= SEND_POOL_BYTES) break;
      if (size === copy.length) continue;
      this.#spareBytes -= size * list.length;
      this.#spare.delete(size);
    }
    if (this.#spareBytes + copy.length > SEND_POOL_BYTES) return;
    let list = this.#spare.get(copy.length);
    if (list === undefined) this.#spare.set(copy.length, (list = []));
    list.push(copy);
    this.#spareBytes += copy.length;
  };

  /** A connection the listener took once its token came. */
  constructor(socket: net.Socket) {
    super(socket);
    // The receiver sends nothing after its token.
    socket.on('data', () => this.gone('protocol error: the receiving end sent bytes'));
  }

  /**
   * Writes a payload (a copy of `views`, or `owned`, a Buffer the caller
   * gives away); returns the stream position where it starts: the packet's
   * locator. `left` is told once the kernel has all of it: the payload's
   * last byte has left this NIC.
   */
  write(views: readonly Uint8Array[], length: number, owned?: Buffer, left?: () => void): number {
    const at = this.#sent;
    this.#sent = (at + length) >>> 0;
    if (this.closed) return at;
    if (owned !== undefined) {
      this.socket.write(owned, left);
      return at;
    }
    const spare = this.#spare.get(length)?.pop();
    if (spare !== undefined) this.#spareBytes -= length;
    const copy = spare ?? Buffer.allocUnsafeSlow(length);
    copyAcross(views, [copy], length);
    // Written to the kernel once the callback runs: the copy is free again.
    this.socket.write(copy, () => {
      this.#recycle(copy);
      left?.();
    });
    return at;
  }

  override destroy(): void {
    super.destroy();
    this.#spare.clear();
  }
}

/** A payload larger than the ring, read into a buffer of its own. */
interface LargePayload {
  /** Its stream position. */
  readonly locator: number;
  readonly buffer: Buffer;
  filled: number;
}

/**
 * Where a receiver's reads land: a ring, read into at the tail and taken
 * from at the head (both counted in stream bytes from the stream's start);
 * or, for a payload larger than the ring that the link waits for, a buffer
 * of that payload's own, read into until it is whole.
 */
class ReceiveRing {
  readonly bytes: Buffer;
  tail = 0;
  head = 0;
  /** Bytes the link waits for, 0 when it does not wait. */
  want = 0;
  /** The socket stopped reading: the ring is full. */
  paused = false;
  /** The large payload being read, and one read whole that the link has not taken yet. */
  large: LargePayload | undefined;
  whole: LargePayload | undefined;
  /** The buffer of the last large payload taken, for the next one (its views lived only as long as that take's task). */
  spare: Buffer | undefined;
  /** Told when the bytes the link waits for are in. */
  ready: () => void = () => undefined;

  constructor(size: number) {
    this.bytes = Buffer.allocUnsafeSlow(size);
  }

  /**
   * Where the next read goes: the rest of a large payload, else the free
   * room from the tail up to the ring's end (a later read wraps). Node asks
   * for it right after each read, even one that filled the ring, and a read
   * into no room fails the socket: so reads leave the ring's last free byte
   * alone, and a socket paused on a full ring has that byte as its next
   * room, still free when take() resumes it.
   */
  readSpace(): Uint8Array {
    const large = this.large;
    if (large !== undefined) return large.buffer.subarray(large.filled, Math.min(large.buffer.length, large.filled + READ_BYTES));
    const size = this.bytes.length;
    const at = this.tail % size;
    const free = size - (this.tail - this.head);
    return this.bytes.subarray(at, at + Math.min(free > 1 ? free - 1 : free, size - at, READ_BYTES));
  }

  /**
   * `bytes` landed in `landed`, where readSpace() said: false pauses the
   * socket once only the ring's last free byte is left, until take() frees
   * room.
   */
  read(bytes: number, landed: Uint8Array): boolean {
    const large = this.large;
    if (large !== undefined) {
      // A read Node set up before the large payload began went into the ring's room. Its bytes are all the
      // payload's: that room was less than the ring's free space, and the payload's rest is at least that.
      if (landed.buffer !== large.buffer.buffer) large.buffer.set(landed.subarray(0, bytes), large.filled);
      // The bytes of a large payload pass the ring by: taken as they come.
      large.filled += bytes;
      this.tail += bytes;
      this.head += bytes;
      if (large.filled === large.buffer.length) {
        this.large = undefined;
        this.whole = large;
        this.want = 0;
        this.ready();
      }
      return true;
    }
    this.tail += bytes;
    if (this.want > 0 && this.tail - this.head >= this.want) {
      this.want = 0;
      this.ready();
    }
    if (this.bytes.length - (this.tail - this.head) > 1) return true;
    this.paused = true;
    return false;
  }

  /**
   * Copies what fits of `chunk` in (bytes a TLS socket decrypted: it reads
   * into buffers of its own); returns how many bytes that was.
   */
  copyIn(chunk: Uint8Array): number {
    let from = 0;
    while (from < chunk.length) {
      const room = this.readSpace();
      const n = Math.min(room.length, chunk.length - from);
      if (n === 0) break;
      room.set(chunk.subarray(from, from + n));
      from += n;
      this.read(n, room);
    }
    // A TLS socket is paused by what did not fit (BulkReceiver's overflow), not by a full ring.
    this.paused = false;
    return from;
  }

  /**
   * Starts reading the payload of `bytes` at the head, larger than the
   * ring, into a buffer of its own: what the ring holds of it moves there
   * (the ring holds nothing after it: it is smaller than the payload).
   */
  beginLarge(bytes: number): void {
    const spare = this.spare !== undefined && this.spare.length >= bytes ? this.spare : undefined;
    this.spare = undefined;
    const large: LargePayload = { locator: this.head >>> 0, buffer: spare?.subarray(0, bytes) ?? Buffer.allocUnsafeSlow(bytes), filled: 0 };
    const size = this.bytes.length;
    while (this.head < this.tail) {
      const at = this.head % size;
      const n = Math.min(this.tail - this.head, size - at);
      large.buffer.set(this.bytes.subarray(at, at + n), large.filled);
      large.filled += n;
      this.head += n;
    }
    this.tail = this.head;
    if (large.filled === bytes) this.whole = large;
    else this.large = large;
  }
}

/**
 * The receiving end: a connection this NIC dialled, read straight into its
 * ring; with TLS, decrypted into the socket's buffers and copied in (TLS's
 * decryption loop does not stop for a full ring), what does not fit held
 * back with the socket paused until take() frees room.
 */
export class BulkReceiver extends BulkStream {
  readonly #ring: ReceiveRing;
  readonly #overflow: Buffer[] = [];
  /** The TLS socket is paused: some of its bytes wait in #overflow. */
  #held = false;
  #copyDue = false;

  private constructor(socket: net.Socket, ring: ReceiveRing, secure: boolean) {
    super(socket);
    this.#ring = ring;
    ring.ready = () => this.events?.ready();
    if (secure) {
      socket.on('data', (chunk: Buffer) => {
        this.#overflow.push(chunk);
        this.#copyOverflow();
      });
    }
  }

  /**
   * Dials a sender's listener (`host` unbracketed), presents `token`, and
   * reads into a ring of `ringBytes`. Resolves once connected (and, with TLS, the
   * server's certificate verified against the CA, naming `serverName`);
   * ECONNREFUSED, ETIMEDOUT or the TLS error otherwise.
   */
  static dial(host: string, port: number, token: Uint8Array, ringBytes: number, config: TlsConfig, serverName: string, timeoutMs: number): Promise<BulkReceiver> {
    if (!Number.isInteger(ringBytes) || ringBytes < MIN_RING_BYTES || ringBytes > MAX_RING_BYTES) {
      return Promise.reject(errno('EINVAL', `a bulk stream's ring is ${MIN_RING_BYTES} to ${MAX_RING_BYTES} bytes, not ${ringBytes}`));
    }
    const ring = new ReceiveRing(ringBytes);
    const secure = config.ca !== undefined;
    return new Promise((resolve, reject) => {
      const socket = secure
        ? tls.connect({
            host,
            port,
            ca: config.ca,
            cert: config.cert,
            key: config.key,
            servername: config.serverName ?? serverName,
            checkServerIdentity: (_host, cert) => tls.checkServerIdentity(config.serverName ?? serverName, cert),
          })
        : net.connect({ host, port, onread: { buffer: () => ring.readSpace(), callback: (bytes: number, landed: Uint8Array) => ring.read(bytes, landed) } });
      const receiver = new BulkReceiver(socket, ring, secure);
      const fail = (error: Error): void => {
        clearTimeout(timer);
        receiver.destroy();
        reject(error);
      };
      const timer = setTimeout(() => fail(errno('ETIMEDOUT', `no bulk stream to ${host}:${port} within ${timeoutMs} ms`)), timeoutMs);
      socket.once('error', fail);
      socket.once(secure ? 'secureConnect' : 'connect', () => {
        clearTimeout(timer);
        socket.off('error', fail);
        socket.write(token);
        resolve(receiver);
      });
    });
  }

  /**
   * The `bytes` of payload at stream position `locator`, as views appended
   * to `out` (valid until the task ends: their room is free for the next
   * read after it): 'wait' when they are not all in yet (events.ready()
   * says when they are), 'misplaced' when the stream is elsewhere or the
   * payload is larger than any message (a protocol error).
   */
  take(locator: number, bytes: number, out: Uint8Array[]): TakeOutcome {
    const ring = this.#ring;
    const size = ring.bytes.length;
    if (bytes > MAX_MSG_SZ) return 'misplaced';
    if (bytes >= size) return this.#takeLarge(locator, bytes, out);
    if (locator !== ring.head >>> 0 || ring.large !== undefined || ring.whole !== undefined) return 'misplaced';
    if (ring.tail - ring.head < bytes) {
      ring.want = bytes;
      return 'wait';
    }
    ring.want = 0;
    const at = ring.head % size;
    const first = Math.min(bytes, size - at);
    out.push(ring.bytes.subarray(at, at + first));
    if (first < bytes) out.push(ring.bytes.subarray(0, bytes - first));
    ring.head += bytes;
    // Held-back TLS bytes go into the room just freed once the caller is done with the views on it.
    if (this.#overflow.length > 0) this.#copyOverflowSoon();
    else if (ring.paused && !this.closed) {
      ring.paused = false;
      this.socket.resume();
    }
    return 'ok';
  }

  #copyOverflowSoon(): void {
    if (this.#copyDue) return;
    this.#copyDue = true;
    queueMicrotask(() => {
      this.#copyDue = false;
      this.#copyOverflow();
    });
  }

  /**
   * A payload larger than the ring: read into a buffer of its own once the
   * link waits for it (its bytes may have started into the ring), handed
   * over whole.
   */
  #takeLarge(locator: number, bytes: number, out: Uint8Array[]): TakeOutcome {
    const ring = this.#ring;
    const whole = ring.whole;
    if (whole !== undefined) {
      if (whole.locator !== locator || whole.buffer.length !== bytes) return 'misplaced';
      ring.whole = undefined;
      out.push(whole.buffer);
      ring.spare = Buffer.from(whole.buffer.buffer, 0, whole.buffer.buffer.byteLength);
      return 'ok';
    }
    const large = ring.large;
    if (large !== undefined) {
      if (large.locator !== locator || large.buffer.length !== bytes) return 'misplaced';
      ring.want = bytes;
      return 'wait';
    }
    if (locator !== ring.head >>> 0) return 'misplaced';
    ring.beginLarge(bytes);
    ring.want = bytes;
    // The ring is empty now: what waited for room (a paused socket, TLS bytes held back) goes on, into the payload's buffer.
    if (this.#overflow.length > 0) this.#copyOverflow();
    else if (ring.paused && !this.closed) {
      ring.paused = false;
      this.socket.resume();
    }
    return this.#takeLarge(locator, bytes, out);
  }

  /** Copies held-back TLS bytes into the ring; pauses the socket while some do not fit, resumes it once all did. */
  #copyOverflow(): void {
    while (this.#overflow.length > 0) {
      const chunk = this.#overflow[0]!;
      const copied = this.#ring.copyIn(chunk);
      if (copied < chunk.length) {
        this.#overflow[0] = chunk.subarray(copied);
        break;
      }
      this.#overflow.shift();
    }
    const full = this.#overflow.length > 0;
    if (full === this.#held || this.closed) return;
    this.#held = full;
    if (full) this.socket.pause();
    else this.socket.resume();
  }
}

/** An offer of a bulk stream to one receiver: the token it must present, and the stream once it did. */
export interface BulkOffer {
  readonly port: number;
  readonly token: Buffer;
  /** The sending end, once the receiver presented the token; undefined if the offer was cancelled first. */
  readonly sender: Promise<BulkSender | undefined>;
  /** Withdraws the offer, and closes the stream if it was redeemed and nobody took it. */
  cancel(): void;
}

interface OpenOffer {
  resolve(sender: BulkSender | undefined): void;
}

/**
 * A NIC's listener for bulk streams, on its GID's address: a peer NIC
 * dials it to receive this NIC's payloads. A connection is taken only with
 * the token of an offer this NIC made in a link's hello (one-time, 32
 * random bytes), so only the NIC that link's handshake spoke with gets it;
 * with TLS, the receiver's certificate is checked too (mutual TLS, as on
 * the wire's gRPC server).
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
    // A TLS handshake that fails is the dialler's problem, not this process's.
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
    let resolve!: (sender: BulkSender | undefined) => void;
    const sender = new Promise<BulkSender | undefined>((r) => (resolve = r));
    this.#offers.set(key, { resolve });
    return {
      port: this.#port,
      token,
      sender,
      cancel: () => {
        if (this.#offers.delete(key)) resolve(undefined);
        else void sender.then((redeemed) => redeemed?.destroy());
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
    const settled = (): void => {
      clearTimeout(timer);
      this.#unproven.delete(socket);
    };
    const onData = (chunk: Buffer): void => {
      parts.push(chunk);
      length += chunk.length;
      if (length < BULK_TOKEN_BYTES) return;
      settled();
      socket.off('data', onData);
      socket.off('close', settled);
      socket.off('error', settled);
      const key = Buffer.concat(parts, length).toString('hex');
      const offer = this.#offers.get(key);
      if (offer === undefined || length > BULK_TOKEN_BYTES) {
        this.#logger?.warn({ from: socket.remoteAddress }, 'wire: a bulk stream with a token no link offered, or more than a token; closed');
        socket.destroy();
        return;
      }
      this.#offers.delete(key);
      offer.resolve(new BulkSender(socket));
    };
    socket.on('data', onData);
    socket.on('close', settled);
    // An error is followed by 'close'; without a listener it would throw.
    socket.on('error', settled);
  }
}
