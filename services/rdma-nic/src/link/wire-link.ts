import { performance } from 'node:perf_hooks';
import type { ClientDuplexStream, ServerDuplexStream } from '@grpc/grpc-js';
import type { TlsConfig } from '@p2p/auth';
import type { RegistrySession } from '@p2p/dmabuf-client';
import { errno } from '@p2p/errno';
import type { rdma } from '@p2p/proto';
import { failStream } from '@p2p/server';
import type { Logger } from 'pino';
import { copyAcross, totalLength } from '../memory/copy';
import { type FabricEndpoint, REFETCH, WireOp, type WireRequest, type WireResponse } from '../transport/fabric';
import { Fifo } from './fifo';
import { FrameBuilder } from './frame-builder';
import { type BulkListener, type BulkOffer, BulkReceiver, type BulkSender, BULK_TOKEN_BYTES } from './bulk-stream';
import { gather } from './gather';
import { gidAddress, gidText } from './gid';
import { type GrantLink, GrantMappings, GrantOffers } from './grants';
import { type PayloadRef, readRequest, readResponse, requestPayload, responsePayload } from './packet-reader';
import type { PendingRequest, PendingRequests, RequestCarrier } from './pending-requests';
import { FRAME_RING_BYTES, FrameRingReader, FrameRingWriter } from './frame-ring';
import { checkRingBytes, RingConsumer, RingProducer } from './ring';
import { RingMemory } from './ring-memory';
import type { PolledSource, TurnPoller } from '../turn-poller';
import type { WireCounters } from './wire-counters';
import {
  FrameField,
  FRAME_HEADER_BYTES,
  FRAME_RING_MAPPED,
  getU64,
  GrantDropField,
  GrantOfferField,
  type GrantState,
  GrantStateField,
  PACKET_BYTES,
  PacketKind,
  Placement,
  RequestField,
  ResponseField,
  RnrClearedField,
  WIRE_VERSION,
} from './wire-layout';
import { BULK_MIN_BYTES, FLUSH_INLINE_BYTES, FLUSH_PACKET_BYTES, HANDSHAKE_TIMEOUT_MS, RX_SLICE_BYTES, WIRE_TLS_NAME } from './wire-options';

/** What a link needs of its fabric. */
export interface LinkHost {
  /** This NIC's GID, canonical text and bytes. */
  readonly gid: string;
  readonly gidBytes: Buffer;
  readonly session: RegistrySession;
  readonly ringBytes: number;
  readonly counters: WireCounters;
  readonly pending: PendingRequests;
  readonly logger: Logger | undefined;
  /** TLS of the wire's connections (plaintext when unconfigured). */
  readonly tls: TlsConfig;
  /** The NIC that answers requests; none yet: requests are dropped. */
  readonly endpoint: FabricEndpoint | undefined;
  /** Polls the frame rings of the fabric's links. */
  readonly framePoller: TurnPoller<PolledSource>;
  /** Where peers on other registries dial this NIC's bulk streams; none: their payloads go inline. */
  readonly bulk: BulkListener | undefined;
}

export interface LinkEvents {
  /** The handshake completed: requests may be sent. */
  opened(link: WireLink): void;
  /** The stream is gone (either side ended it, it failed, or the handshake did). Called once. */
  closed(link: WireLink, reason: string): void;
}

/** The two kinds of gRPC stream a link runs on, reduced to what it does with them. */
interface FrameStream {
  write(frame: rdma.WireFrame): void;
  end(): void;
}

type LinkState = 'handshake' | 'open' | 'closed';

/** A received frame being run, packet by packet. */
interface RxFrame {
  readonly frame: rdma.WireFrame;
  readonly view: DataView;
  /** Offset and index of the next packet to run. */
  at: number;
  index: number;
  readonly count: number;
  /** A frame read from the frame ring: the position to release once its packets ran. */
  readonly ringEnd: number | undefined;
}

/** A packet whose payload is not all in on the bulk stream yet: the drain stops until it is. */
const WAIT = Symbol('wait for the bulk stream');
type PacketOutcome = string | undefined | typeof WAIT;

/** How many frames may arrive ahead of one still on its way (the other path) before the link calls it a protocol error. */
const MAX_HELD_FRAMES = 4096;

/**
 * What a message that is no ConnectRequest (cut short, a field of a wire
 * type it cannot have) decodes to on the wire's server (see RemoteFabric):
 * the link refuses it with EINVAL rather than let grpc-js answer the
 * decoder's throw with INTERNAL, the code kept for bugs in the server.
 */
export class MalformedMessage {
  constructor(readonly reason: string) {}
}

const NO_PAYLOAD: readonly Uint8Array[] = Object.freeze([]);
const NO_PACKETS = Buffer.alloc(0);

/**
 * One Connect stream between two NICs. The NIC that opened it (the
 * connector) sends its requests on it, and the other (the acceptor) answers
 * on the same stream, in request order, so an answer is matched to its
 * request by a link sequence number without any lookup; each side also
 * sends RNR_CLEARED hints.
 *
 * Payload bytes do not travel on the stream when both NICs can map the
 * registry's system heap: each side allocates a ring (ring.ts) that it writes
 * its payloads into (the connector's WRITE and SEND data, the acceptor's READ
 * response data) and hands it to the other side by fd passing. The
 * handshake, in WireHello frames:
 *
 *   connector -> acceptor: gid, registry pid and incarnation
 *   acceptor -> connector: the same, and a token for the acceptor's ring
 *   connector -> acceptor: the same, and a token for the connector's ring
 *
 * A ring is offered only within one registry incarnation (fds of another
 * mean nothing), used only once the receiver's frames say it maps it with
 * shared memory, and bypassed whenever it is full: the payload then goes in
 * inline_data. Everything else is the binary packets of wire-layout.ts.
 *
 * A frame is written once the task that produced its packets is done
 * (process.nextTick: after the callback and its microtasks), so the
 * packets one incoming message produces share one gRPC message. HTTP/2
 * puts what is written on the socket in the check phase of the loop
 * iteration it was written in (before any JS immediate), or of the next one
 * for a write from an immediate: a frame written in the poll phase leaves
 * before this side goes on to the next iteration's input, where a
 * setImmediate flush would hold every frame back behind a whole turn of
 * work on each side, and the pipeline would move in turns rather than
 * stream.
 */
export class WireLink implements RequestCarrier {
  readonly role: 'connector' | 'acceptor';
  readonly #host: LinkHost;
  readonly #events: LinkEvents;
  readonly #stream: FrameStream;
  #peerGid: string;
  #state: LinkState = 'handshake';
  #wasOpened = false;
  #tx: RingProducer | undefined;
  #rx: RingConsumer | undefined;
  /** The buffers under this side's rings and the peer's: a payload ring, then a frame ring (frame-ring.ts). */
  #txMemory: RingMemory | undefined;
  #rxMemory: RingMemory | undefined;
  /** This side's frames go through #txFrames once the peer says it maps the buffer; the peer's come through #rxFrames. */
  #txFrames: FrameRingWriter | undefined;
  #txFramesUsable = false;
  #rxFrames: FrameRingReader | undefined;
  readonly #framesSource: PolledSource;
  #nextFrameSeq = 0;
  #rxFrameSeq = 0;
  /** Frames that came ahead of one still on the other path, by sequence number. */
  readonly #heldFrames = new Map<number, RxFrame>();
  /** The connector's grants of its MR memory to the acceptor, and the acceptor's mappings of them (grants.ts); within one registry only. */
  #offers: GrantOffers | undefined;
  #mappings: GrantMappings | undefined;
  readonly #grantLink: GrantLink;
  /**
   * Payloads between NICs on different registries (bulk-stream.ts): the
   * stream this side sends on (the peer dialled it), the one it receives on
   * (it dialled the peer), and its offer while the handshake runs.
   */
  #bulkTx: BulkSender | undefined;
  #bulkRx: BulkReceiver | undefined;
  #bulkOffer: BulkOffer | undefined;
  /** Requests whose payload the bulk stream has not handed to the kernel whole yet. */
  readonly #leaving = new Set<PendingRequest>();
  readonly #builder = new FrameBuilder();
  /** Requests sent on this stream and not answered on it yet, oldest first. */
  readonly #inFlight = new Fifo<PendingRequest>();
  /** The requests on this stream not answered yet, by (source QPN, PSN): what a retransmission rides on. */
  readonly #unanswered = new Map<number, PendingRequest>();
  #nextSeq = 0;
  #flushQueued = false;
  /** The end-of-turn immediate, which resets #sliceBytes, is due. */
  #turnQueued = false;
  /** Say that this side maps the peer's ring, even with nothing else to send. */
  #announce = false;
  /** The connector waits for the acceptor's first frame, which says whether it mapped the connector's ring. */
  #firstFrameWaiter: (() => void) | undefined;
  /** performance.now() when the peer was last heard from: a peer that sends frames is alive, however slow. */
  lastHeardAt = 0;
  /** Received frames whose packets have not all run yet (held while the handshake runs). */
  readonly #rxQueue = new Fifo<RxFrame>();
  /** A drain is running or due in a later turn. */
  #draining = false;
  /** Payload bytes copied in or out this event-loop turn: past RX_SLICE_BYTES, received packets wait for a later turn. */
  #sliceBytes = 0;
  #helloWaiter: { resolve: (hello: rdma.WireHello) => void; reject: (error: Error) => void } | undefined;
  readonly #handshakeTimer: NodeJS.Timeout;
  readonly #handshakeDone: Promise<void>;
  readonly #ended: Promise<void>;
  readonly #markEnded: () => void;
  readonly #releases: Promise<void>[] = [];
  readonly #flushTask = (): void => this.#flush();
  readonly #turnTask = (): void => {
    this.#turnQueued = false;
    this.#sliceBytes = 0;
  };
  readonly #drainTask = (): void => {
    this.#sliceBytes = 0;
    this.#drain();
  };

  private constructor(host: LinkHost, events: LinkEvents, role: 'connector' | 'acceptor', peerGid: string, stream: FrameStream) {
    this.#host = host;
    this.#events = events;
    this.role = role;
    this.#peerGid = peerGid;
    this.#stream = stream;
    let markEnded!: () => void;
    this.#ended = new Promise<void>((resolve) => (markEnded = resolve));
    this.#markEnded = markEnded;
    this.#grantLink = this.#makeGrantLink();
    this.#framesSource = { scan: () => this.#pollFrames(), sleep: () => this.#rxFrames?.sleep() ?? true, wake: () => this.#rxFrames?.wake() };
    this.#handshakeTimer = setTimeout(() => this.#close(`no handshake within ${HANDSHAKE_TIMEOUT_MS} ms`), HANDSHAKE_TIMEOUT_MS);
    this.#handshakeDone = (role === 'connector' ? this.#connectorHandshake() : this.#acceptorHandshake()).catch((error: unknown) =>
      this.#close(`handshake failed: ${describe(error)}`),
    );
  }

  /** Opens a stream to the NIC of `peerGid` through `client` and starts the handshake. */
  static connect(host: LinkHost, client: rdma.RdmaWireServiceClient, peerGid: string, events: LinkEvents): WireLink {
    const call: ClientDuplexStream<rdma.ConnectRequest, rdma.ConnectResponse> = client.connect();
    const link = new WireLink(host, events, 'connector', peerGid, { write: (frame) => call.write({ frame }), end: () => call.cancel() });
    call.on('data', (message: rdma.ConnectResponse) => link.#receive(message.frame));
    call.on('error', (error: Error) => link.#close(`stream failed: ${error.message}`));
    call.on('status', (status: { details: string }) => link.#close(`the peer ended the stream (${status.details || 'OK'})`));
    return link;
  }

  /**
   * Takes a stream another NIC opened and answers its handshake. A message
   * that did not decode ends the stream with EINVAL (the link closes on the
   * stream's error).
   */
  static accept(host: LinkHost, call: ServerDuplexStream<rdma.ConnectRequest | MalformedMessage, rdma.ConnectResponse>, events: LinkEvents): WireLink {
    const link = new WireLink(host, events, 'acceptor', '', { write: (frame) => call.write({ frame }), end: () => call.end() });
    call.on('data', (message: rdma.ConnectRequest | MalformedMessage) => {
      if (message instanceof MalformedMessage) failStream(call, errno('EINVAL', `protocol error: a message that is no ConnectRequest: ${message.reason}`));
      else link.#receive(message.frame);
    });
    call.on('error', (error: Error) => link.#close(`stream failed: ${error.message}`));
    call.on('cancelled', () => link.#close('the peer cancelled the stream'));
    call.on('end', () => link.#close('the peer ended the stream'));
    return link;
  }

  /** The other NIC's GID; '' until its hello came. */
  get peerGid(): string {
    return this.#peerGid;
  }

  get open(): boolean {
    return this.#state === 'open';
  }

  /** The handshake completed at some point (the link may be closed since). */
  get wasOpened(): boolean {
    return this.#wasOpened;
  }

  /** Resolves once the link is closed, its handshake over and its rings released. */
  async settled(): Promise<void> {
    await this.#ended;
    await this.#handshakeDone;
    await Promise.all(this.#releases);
  }

  /**
   * Puts a request on the wire (only on an open link): its payload into the
   * ring or inline now, its packet into this turn's frame. `owned` is a copy
   * of the payload the caller made and gives away (a request queued while
   * connecting), sent inline without another copy.
   */
  sendRequest(dqpn: number, request: WireRequest, entry: PendingRequest, owned?: Buffer): void {
    const key = unansweredKey(request.srcQpn, request.psn);
    const first = this.#unanswered.get(key);
    if (first !== undefined) {
      // A retransmission of a PSN this stream carried and the peer has not answered: the stream is
      // reliable, so that copy arrives. The retransmission takes its answer instead of queueing another
      // copy behind it, which a slow responder (cold pages, a busy core) would only fall further behind on.
      first.successor = entry;
      entry.seq = first.seq;
      entry.carrier = this;
      return;
    }
    const grant = request.local !== undefined && this.#state === 'open' ? this.#offers?.id(request.local.source) : undefined;
    const length = owned !== undefined ? owned.length : totalLength(request.payload);
    let placement: Placement = Placement.NONE;
    let locator = 0;
    let bytes = length;
    if (grant !== undefined) {
      // The responder moves the bytes itself, straight between the two MRs: nothing to copy here.
      placement = Placement.GRANT;
      locator = grant;
      bytes = request.length;
    } else if (length > 0) {
      locator = this.#tx?.put(owned !== undefined ? [owned] : request.payload, length) ?? -1;
      if (locator >= 0) {
        placement = Placement.RING;
        this.#host.counters.ringBytesSent += length;
      } else if (this.#bulkTx !== undefined && length >= BULK_MIN_BYTES) {
        placement = Placement.STREAM;
        // IBA starts a request's transport timer as its last packet leaves: until the stream has taken all of
        // this payload, a timer that runs out is restarted (stillWorking).
        this.#leaving.add(entry);
        locator = this.#bulkTx.write(request.payload, length, owned, () => this.#leaving.delete(entry));
        this.#host.counters.streamBytesSent += length;
      } else {
        placement = Placement.INLINE;
        locator = this.#builder.addInline(owned ?? gather(request.payload, length));
        this.#host.counters.inlineBytesSent += length;
      }
      this.#sliceBytes += length;
    }
    entry.seq = this.#nextSeq;
    entry.carrier = this;
    this.#nextSeq = (this.#nextSeq + 1) >>> 0;
    this.#inFlight.push(entry);
    this.#unanswered.set(key, entry);
    this.#builder.request(dqpn, entry.seq, request, placement, locator, bytes);
    this.#packetAdded();
  }

  /** The hint that the peer's QP `qpn` may retry what this NIC answered RNR. */
  sendRnrCleared(qpn: number): void {
    this.#builder.rnrCleared(qpn);
    this.#packetAdded();
  }

  /**
   * RequestCarrier: the stream is up, and either `entry`'s payload is still
   * leaving on the bulk stream, or the peer spoke within `windowMs` and has
   * answered nothing sent after `entry`.
   */
  stillWorking(entry: PendingRequest, windowMs: number): boolean {
    if (this.#state !== 'open') return false;
    // Its payload is still leaving on the bulk stream: its last packet is not sent yet.
    if (this.#leaving.has(entry)) return true;
    if (performance.now() - this.lastHeardAt >= windowMs) return false;
    const head = this.#inFlight.peek();
    return head !== undefined && !seqBefore(entry.seq, head.seq);
  }

  /** Ends the stream from this side. Requests in flight on it wait for their timers. */
  close(reason = 'closed'): void {
    this.#close(reason);
  }

  async #connectorHandshake(): Promise<void> {
    // Offered before this side knows whether the peer shares its registry; withdrawn if it does.
    const bulkOffer = this.#host.bulk?.offer();
    this.#bulkOffer = bulkOffer;
    this.#sendHello('', 0, bulkOffer);
    const theirs = await this.#hello();
    const gid = gidText(theirs.gid);
    if (gid !== this.#peerGid) throw errno('ENXIO', `the NIC dialled as ${this.#peerGid} introduced itself as ${gid}`);
    const sameRegistry = theirs.registryIncarnation === this.#host.session.incarnation;
    if (sameRegistry) this.#offers = new GrantOffers(this.#grantLink, theirs.registryPid);
    const [, token] = await Promise.all([
      sameRegistry && theirs.ringToken !== '' ? this.#acceptRing(theirs) : undefined,
      sameRegistry ? this.#offerRing(theirs.registryPid) : '',
    ]);
    if (this.#isClosed()) return;
    const dialled = !sameRegistry && (await this.#dialBulk(theirs));
    if (this.#isClosed()) return;
    const firstFrame = new Promise<void>((resolve) => (this.#firstFrameWaiter = resolve));
    this.#sendHello(token, token !== '' ? this.#host.ringBytes : 0, undefined, dialled);
    if (bulkOffer !== undefined) await this.#takeBulk(bulkOffer, !sameRegistry && theirs.bulkConnected);
    // Requests wait for the acceptor's first frame: by then it has mapped this side's ring (or said it cannot),
    // so the first payloads take the ring rather than the slow inline path.
    await firstFrame;
    if (this.#isClosed()) return;
    this.#opened();
  }

  async #acceptorHandshake(): Promise<void> {
    const first = await this.#hello();
    this.#peerGid = gidText(first.gid);
    const sameRegistry = first.registryIncarnation === this.#host.session.incarnation;
    if (sameRegistry) this.#mappings = new GrantMappings(this.#grantLink);
    const token = sameRegistry ? await this.#offerRing(first.registryPid) : '';
    if (this.#isClosed()) return;
    // A peer on another registry shares no memory with this NIC: payloads go over bulk streams, one each way.
    const dialled = !sameRegistry && (await this.#dialBulk(first));
    if (this.#isClosed()) return;
    const bulkOffer = sameRegistry ? undefined : this.#host.bulk?.offer();
    this.#bulkOffer = bulkOffer;
    this.#sendHello(token, token !== '' ? this.#host.ringBytes : 0, bulkOffer, dialled);
    const second = await this.#hello();
    if (sameRegistry && second.ringToken !== '') await this.#acceptRing(second);
    if (bulkOffer !== undefined) await this.#takeBulk(bulkOffer, second.bulkConnected);
    if (this.#isClosed()) return;
    this.#opened();
  }

  /**
   * Dials the bulk stream the peer's hello offers, to receive its payloads
   * into a ring of RDMA_NIC_RING_BYTES; whether it got through. On failure
   * the peer sends inline, as its next hello tells it.
   */
  async #dialBulk(hello: rdma.WireHello): Promise<boolean> {
    // A NIC with its bulk streams off (RDMA_NIC_BULK_PORT=off) neither offers nor dials them.
    if (this.#host.bulk === undefined || hello.bulkPort === 0 || hello.bulkToken.length !== BULK_TOKEN_BYTES) return false;
    const { tls, logger, ringBytes } = this.#host;
    try {
      const receiver = await BulkReceiver.dial(gidAddress(this.#peerGid), hello.bulkPort, hello.bulkToken, ringBytes, tls, WIRE_TLS_NAME, HANDSHAKE_TIMEOUT_MS);
      if (this.#isClosed()) {
        receiver.destroy();
        return false;
      }
      this.#bulkRx = receiver;
      receiver.bind({
        ready: () => {
          if (this.#state === 'open' && !this.#draining) this.#drain();
        },
        closed: (reason) => this.#close(`bulk stream from the peer ${reason}`),
      });
      return true;
    } catch (error) {
      logger?.warn({ peer: this.#peerGid, port: hello.bulkPort, err: error }, 'wire: cannot dial the bulk stream; the peer sends its payloads inline');
      return false;
    }
  }

  /**
   * Takes the sending end of the bulk stream the peer dialled, once its
   * token came (the handshake timer bounds the wait: closing withdraws the
   * offer), or withdraws the offer the peer did not take up.
   */
  async #takeBulk(offer: BulkOffer, dialled: boolean): Promise<void> {
    if (!dialled) offer.cancel();
    const sender = await offer.sender;
    if (this.#bulkOffer === offer) this.#bulkOffer = undefined;
    if (sender === undefined) return;
    if (this.#isClosed()) {
      sender.destroy();
      return;
    }
    this.#bulkTx = sender;
    sender.bind({ ready: () => undefined, closed: (reason) => this.#close(`bulk stream to the peer ${reason}`) });
  }

  /**
   * Allocates this side's ring and sends it to the peer: the token for the
   * hello, '' when there is none (this process cannot map the heap with
   * shared memory, or the registry refused: payloads go inline).
   */
  async #offerRing(peerPid: number): Promise<string> {
    const { session, ringBytes, logger } = this.#host;
    try {
      const memory = await RingMemory.allocate(session, ringBytes + FRAME_RING_BYTES);
      if (memory === undefined) {
        logger?.debug({ peer: this.#peerGid }, 'wire: no shared memory with the registry; payloads go inline');
        return '';
      }
      if (this.#isClosed()) {
        await memory.release();
        return '';
      }
      this.#txMemory = memory;
      this.#tx = new RingProducer(memory.window(0, ringBytes));
      this.#txFrames = FrameRingWriter.over(memory.window(ringBytes, FRAME_RING_BYTES));
      return await memory.sendTo(peerPid);
    } catch (error) {
      logger?.warn({ peer: this.#peerGid, err: error }, 'wire: no ring offered; payloads go inline');
      return '';
    }
  }

  /** Maps the peer's ring from its hello; on any failure the peer keeps sending inline, as it never hears this side maps it. */
  async #acceptRing(hello: rdma.WireHello): Promise<void> {
    const { session, logger } = this.#host;
    try {
      const size = Number(hello.ringBytes);
      checkRingBytes(size);
      const memory = await RingMemory.receive(session, hello.ringToken, size + FRAME_RING_BYTES);
      if (memory === undefined) {
        logger?.debug({ peer: this.#peerGid }, "wire: the peer's ring is not shared memory here; it sends inline");
        return;
      }
      if (this.#isClosed()) {
        await memory.release();
        return;
      }
      this.#rxMemory = memory;
      this.#rx = new RingConsumer(memory.window(0, size));
      this.#rxFrames = FrameRingReader.over(memory.window(size, FRAME_RING_BYTES));
    } catch (error) {
      logger?.warn({ peer: this.#peerGid, err: error }, "wire: cannot map the peer's ring; it sends inline");
    }
  }

  /** What the grant tables (grants.ts) use of this link. */
  #makeGrantLink(): GrantLink {
    const link = this;
    const host = this.#host;
    return {
      session: host.session,
      logger: host.logger,
      get sending(): boolean {
        return link.#state === 'open';
      },
      sendOffer: (id, bufferId, size, token, bdf) => {
        this.#builder.grantOffer(id, bufferId, size, token, bdf);
        this.#packetAdded();
      },
      sendState: (id, state: GrantState) => {
        this.#builder.grantState(id, state);
        this.#packetAdded();
      },
      sendDrop: (id) => {
        this.#builder.grantDrop(id);
        this.#packetAdded();
      },
    };
  }

  /** A method, not a field test, so that the compiler does not carry a narrowing of #state across an await. */
  #isClosed(): boolean {
    return this.#state === 'closed';
  }

  #hello(): Promise<rdma.WireHello> {
    return new Promise((resolve, reject) => {
      this.#helloWaiter = { resolve, reject };
    });
  }

  #sendHello(ringToken: string, ringBytes: number, bulk?: BulkOffer, bulkConnected = false): void {
    const { gidBytes, session, counters } = this.#host;
    counters.framesSent++;
    this.#stream.write({
      hello: {
        gid: gidBytes,
        registryPid: session.pid,
        registryIncarnation: session.incarnation,
        ringToken,
        ringBytes: BigInt(ringBytes),
        bulkPort: bulk?.port ?? 0,
        bulkToken: bulk?.token ?? NO_PACKETS,
        bulkConnected,
      },
      packets: NO_PACKETS,
      inlineData: [],
    });
  }

  #opened(): void {
    if (this.#state !== 'handshake') return;
    clearTimeout(this.#handshakeTimer);
    this.#state = 'open';
    this.#wasOpened = true;
    this.#host.counters.linksOpened++;
    this.#host.logger?.debug({ peer: this.#peerGid, role: this.role, txRing: this.#tx !== undefined, rxRing: this.#rx !== undefined }, 'wire: link open');
    // The first frame tells the peer whether its ring is mapped here (it sends inline until it is); the
    // connector opens on it.
    this.#announce = true;
    this.#schedule();
    // The peer's frames may come through its frame ring from now on: poll it (and sleep on it once idle).
    if (this.#rxFrames !== undefined) this.#host.framePoller.wake(this.#framesSource);
    // The owner sends what waited for the link before anything the early frames' replies may send.
    this.#events.opened(this);
    if (this.#rxQueue.length > 0 && !this.#draining) this.#drain();
  }

  #receive(frame: rdma.WireFrame | undefined): void {
    if (this.#state === 'closed') return;
    if (frame === undefined) {
      this.#close('protocol error: a message without a frame');
      return;
    }
    this.#host.counters.framesReceived++;
    this.lastHeardAt = performance.now();
    if (frame.hello !== undefined) {
      const waiter = this.#helloWaiter;
      if (waiter === undefined) {
        this.#close('protocol error: an unexpected hello');
        return;
      }
      this.#helloWaiter = undefined;
      waiter.resolve(frame.hello);
    }
    // An empty message is a wake-up: the peer wrote into its frame ring and saw this side asleep on it.
    if (this.#rxFrames !== undefined && this.#state === 'open') this.#host.framePoller.wake(this.#framesSource);
    if (frame.packets.length === 0) return;
    const problem = this.#acceptFrame(frame, undefined);
    if (problem !== undefined) this.#close(`protocol error: ${problem}`);
  }

  /**
   * The peer's frame ring, polled each event-loop turn while awake: queues
   * what it holds (bounded per turn) and runs it. Whether there was any.
   */
  #pollFrames(): boolean {
    const reader = this.#rxFrames;
    if (reader === undefined || this.#state !== 'open') return false;
    let worked = false;
    for (let frames = 0; frames < 256; frames++) {
      const next = reader.next();
      if (next === undefined) break;
      if (typeof next === 'string') {
        this.#close(`protocol error: frame ring: ${next}`);
        return false;
      }
      worked = true;
      this.#host.counters.framesReceived++;
      this.#host.counters.ringFramesReceived++;
      const problem = this.#acceptFrame({ hello: undefined, packets: next.packets, inlineData: next.inlineData }, next.end);
      if (problem !== undefined) {
        this.#close(`protocol error: ${problem}`);
        return false;
      }
    }
    if (worked) this.lastHeardAt = performance.now();
    return worked;
  }

  /**
   * A frame from either path: its credit now, its packets in frame sequence
   * order (one that came ahead of another still on the other path waits for
   * it). Returns a protocol problem, if any.
   */
  #acceptFrame(frame: rdma.WireFrame, ringEnd: number | undefined): string | undefined {
    const bytes = frame.packets;
    const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
    if (bytes.length < FRAME_HEADER_BYTES || view.getUint8(FrameField.VERSION) !== WIRE_VERSION) return `not a version ${WIRE_VERSION} frame`;
    // Credit is cumulative: it frees ring space at once, even before the packets ahead of this frame have run.
    if ((view.getUint8(FrameField.FLAGS) & FRAME_RING_MAPPED) !== 0) {
      this.#tx?.credit(view.getUint32(FrameField.CONSUMED, true));
      this.#txFramesUsable = this.#txFrames !== undefined;
    }
    this.#firstFrameWaiter?.();
    this.#firstFrameWaiter = undefined;
    const seq = view.getUint32(FrameField.SEQ, true);
    const rx: RxFrame = { frame, view, at: FRAME_HEADER_BYTES, index: 0, count: view.getUint32(FrameField.PACKETS, true), ringEnd };
    if (seq !== this.#rxFrameSeq) {
      const ahead = (seq - this.#rxFrameSeq) >>> 0;
      if (ahead > MAX_HELD_FRAMES || this.#heldFrames.has(seq)) return `frame ${seq} where ${this.#rxFrameSeq} was due`;
      this.#heldFrames.set(seq, rx);
      return undefined;
    }
    for (let next: RxFrame | undefined = rx; next !== undefined; next = this.#heldFrames.get(this.#rxFrameSeq)) {
      this.#heldFrames.delete(this.#rxFrameSeq);
      this.#rxFrameSeq = (this.#rxFrameSeq + 1) >>> 0;
      this.#host.counters.packetsReceived += next.count;
      this.#rxQueue.push(next);
    }
    if (this.#state === 'open' && !this.#draining) this.#drain();
    return undefined;
  }

  /**
   * Runs the received packets in order while this turn has copied less than
   * RX_SLICE_BYTES of payload (in or out), then lets the event loop write
   * what the slice produced (answers, credit, the requests its replies made)
   * before going on: the peer refills the pipeline while this side copies,
   * instead of the two sides taking turns. A malformed packet ends the link.
   */
  #drain(): void {
    if (this.#state !== 'open') return;
    if (this.#sliceBytes >= RX_SLICE_BYTES) {
      this.#yieldDrain();
      return;
    }
    this.#draining = true;
    for (let rx = this.#rxQueue.peek(); rx !== undefined; rx = this.#rxQueue.peek()) {
      if (rx.index === rx.count) {
        this.#rxQueue.shift();
        if (rx.ringEnd !== undefined) this.#rxFrames?.release(rx.ringEnd);
        continue;
      }
      const problem = this.#packet(rx);
      if (problem === WAIT) {
        // The bulk stream's ready() drains again once the payload is all in.
        this.#draining = false;
        if (this.#rx?.unreported === true) this.#schedule();
        return;
      }
      if (problem !== undefined) {
        this.#close(`protocol error: ${problem}`);
        return;
      }
      // A reply or the responder may have closed the fabric.
      if (this.#state !== 'open') return;
      if (this.#sliceBytes >= RX_SLICE_BYTES && (rx.index < rx.count || this.#rxQueue.length > 1)) {
        this.#yieldDrain();
        return;
      }
    }
    this.#draining = false;
    if (this.#rx?.unreported === true) this.#schedule();
  }

  /**
   * Goes on draining in a JS immediate: the frame the slice produced is
   * written when this task ends, and HTTP/2 sends it in a check phase before
   * that immediate runs (this iteration's from the poll phase, the next
   * one's from an immediate).
   */
  #yieldDrain(): void {
    this.#draining = true;
    if (this.#rx?.unreported === true) this.#schedule();
    setImmediate(this.#drainTask);
  }

  /** Runs the next packet of `rx`: a protocol problem, if any, or WAIT (nothing ran) for payload still on its way. */
  #packet(rx: RxFrame): PacketOutcome {
    const { view, at } = rx;
    const kind = at < view.byteLength ? view.getUint8(at) : 0;
    const size = PACKET_BYTES[kind] ?? 0;
    if (size === 0 || at + size > view.byteLength) {
      return `packet ${rx.index} of ${rx.count} is cut short or of unknown kind ${kind}`;
    }
    const outcome = this.#runPacket(kind, view, at, rx.frame);
    if (outcome !== WAIT) {
      rx.at += size;
      rx.index++;
    }
    return outcome;
  }

  #runPacket(kind: number, view: DataView, at: number, frame: rdma.WireFrame): PacketOutcome {
    switch (kind) {
      case PacketKind.REQUEST:
        return this.#onRequest(view, at, frame);
      case PacketKind.RESPONSE:
        return this.#onResponse(view, at, frame);
      case PacketKind.RNR_CLEARED:
        try {
          this.#host.endpoint?.retryAfterRnr(view.getUint32(at + RnrClearedField.QPN, true));
        } catch (error) {
          this.#host.logger?.error({ err: error, peer: this.#peerGid }, 'wire: retryAfterRnr threw');
        }
        return undefined;
      case PacketKind.GRANT_OFFER:
        return this.#onGrantOffer(view, at, frame);
      case PacketKind.GRANT_STATE: {
        const id = view.getUint32(at + GrantStateField.ID, true);
        return this.#offers?.state(id, view.getUint8(at + GrantStateField.STATE)) === true ? undefined : `GRANT_STATE for grant ${id}, never offered`;
      }
      default:
        this.#mappings?.dropped(view.getUint32(at + GrantDropField.ID, true));
        return this.#mappings === undefined ? 'GRANT_DROP on a link without grants' : undefined;
    }
  }

  #onGrantOffer(view: DataView, at: number, frame: rdma.WireFrame): string | undefined {
    const token = frame.inlineData[view.getUint32(at + GrantOfferField.TOKEN, true)];
    const bdf = frame.inlineData[view.getUint32(at + GrantOfferField.BDF, true)];
    if (this.#mappings === undefined || token === undefined || bdf === undefined) return 'a GRANT_OFFER without its token, or on a link without grants';
    return this.#mappings.offered(
      view.getUint32(at + GrantOfferField.ID, true),
      view.getBigUint64(at + GrantOfferField.BUFFER_ID, true),
      getU64(view, at + GrantOfferField.SIZE),
      Buffer.from(token).toString('utf8'),
      Buffer.from(bdf).toString('utf8'),
    );
  }

  /**
   * A request for this NIC: the responder runs it now, on views of the
   * payload where it lies (the peer's ring, inline, or the requester's MR
   * through a grant). Returns a protocol problem, if any.
   */
  #onRequest(view: DataView, at: number, frame: rdma.WireFrame): PacketOutcome {
    const ref = requestPayload(view, at);
    const seq = view.getUint32(at + RequestField.SEQ, true);
    let payload: readonly Uint8Array[] | undefined;
    let sink: Uint8Array[] | undefined;
    if (ref.placement === Placement.GRANT) {
      const views: Uint8Array[] = [];
      const offset = getU64(view, at + RequestField.GRANT_OFFSET);
      const reachable = this.#mappings?.views(ref.locator, offset, ref.bytes, views);
      if (reachable === undefined) return `a request names grant ${ref.locator} [${offset}, +${ref.bytes}), which this side does not hold`;
      if (!reachable) {
        // The requester's memory went under the request (a move_notify took the grant): nothing ran, nothing advanced.
        if (this.#state === 'open') this.#respond(view.getUint32(at + RequestField.SRC_QPN, true), view.getUint32(at + RequestField.PSN, true), seq, REFETCH_RESPONSE);
        return undefined;
      }
      if (view.getUint8(at + RequestField.OP) === WireOp.RDMA_READ) {
        payload = NO_PAYLOAD;
        sink = views;
      } else {
        payload = views;
        this.#host.counters.directBytes += ref.bytes;
        this.#sliceBytes += ref.bytes;
      }
    } else {
      const found = this.#payload(ref, frame);
      if (found === WAIT) return WAIT;
      if (found === undefined) return `request payload (placement ${ref.placement}, ${ref.bytes} bytes) is not there`;
      payload = found;
    }
    const request = readRequest(view, at, this.#peerGid, payload);
    let response: WireResponse | undefined;
    try {
      response = this.#host.endpoint?.receive(view.getUint32(at + RequestField.DQPN, true), request);
    } catch (error) {
      // A responder bug must not take the link down: the request goes unanswered.
      this.#host.logger?.error({ err: error, peer: this.#peerGid }, 'wire: the responder threw; request dropped');
    }
    if (ref.placement === Placement.RING) this.#rx?.release(ref.locator);
    // A request the responder drops still gets a link-level notice (never an answer): the requester's timer
    // runs out as for a silent drop, but its retransmission then goes on the wire again rather than wait
    // for an answer to this copy.
    if (this.#state === 'open') this.#respond(request.srcQpn, request.psn, seq, response ?? DROPPED, sink, ref.locator);
    return undefined;
  }

  /** Answers go in request order: a sequence number past older requests means those got none (the responder dropped them). */
  #onResponse(view: DataView, at: number, frame: rdma.WireFrame): PacketOutcome {
    const ref = responsePayload(view, at);
    // The payload first, before anything moves: one still on the bulk stream leaves the packet to run again.
    const data = ref.placement === Placement.GRANT ? NO_PAYLOAD : this.#payload(ref, frame);
    if (data === WAIT) return WAIT;
    if (data === undefined) return `response data (placement ${ref.placement}, ${ref.bytes} bytes) is not there`;
    const seq = view.getUint32(at + ResponseField.SEQ, true);
    let entry = this.#inFlight.peek();
    while (entry !== undefined && seqBefore(entry.seq, seq)) {
      this.#inFlight.shift();
      this.#unanswered.delete(unansweredKey(entry.srcQpn, entry.psn));
      entry = this.#inFlight.peek();
    }
    if (entry !== undefined && entry.seq === seq) {
      this.#inFlight.shift();
      this.#unanswered.delete(unansweredKey(entry.srcQpn, entry.psn));
      // The answer goes to the latest transmission still waiting: the request, or the retransmission riding
      // on it. One to a request whose timer ran out with nothing riding, or one that does not match, is
      // stale: dropped, as a requester drops an ACK for a PSN it no longer waits for.
      const waiting = entry.done ? entry.successor : entry;
      const dropped = view.getInt32(at + ResponseField.STATUS, true) === DROPPED.status;
      if (!dropped && waiting !== undefined && !waiting.done && entry.srcQpn === view.getUint32(at + ResponseField.DQPN, true) && entry.psn === view.getUint32(at + ResponseField.PSN, true)) {
        if (ref.placement === Placement.GRANT) {
          // READ data the responder put in this side's memory already.
          this.#host.pending.settle(waiting, { ...readResponse(view, at, undefined), landed: ref.bytes });
        } else {
          this.#host.pending.settle(waiting, readResponse(view, at, ref.placement !== Placement.NONE ? data : undefined));
        }
      }
    }
    if (ref.placement === Placement.RING) this.#rx?.release(ref.locator);
    return undefined;
  }

  /**
   * The payload a packet places: views into the peer's ring, the inline
   * buffer or the bulk stream; undefined if it is not where the packet says,
   * WAIT if it is still on its way over the bulk stream.
   */
  #payload({ placement, locator, bytes }: PayloadRef, frame: rdma.WireFrame): readonly Uint8Array[] | undefined | typeof WAIT {
    if (placement === Placement.NONE) return bytes === 0 ? NO_PAYLOAD : undefined;
    if (placement === Placement.INLINE) {
      const data = frame.inlineData[locator];
      if (data === undefined || data.length !== bytes) return undefined;
      this.#host.counters.inlineBytesReceived += bytes;
      this.#sliceBytes += bytes;
      return [data];
    }
    const views: Uint8Array[] = [];
    if (placement === Placement.STREAM) {
      const outcome = bytes > 0 ? this.#bulkRx?.take(locator, bytes, views) : undefined;
      if (outcome === 'wait') return WAIT;
      if (outcome !== 'ok') return undefined;
      this.#host.counters.streamBytesReceived += bytes;
      this.#sliceBytes += bytes;
      return views;
    }
    if (placement !== Placement.RING || this.#rx?.views(locator, bytes, views) !== true) return undefined;
    this.#host.counters.ringBytesReceived += bytes;
    this.#sliceBytes += bytes;
    return views;
  }

  /**
   * Answers a request in order. READ data goes into `sink`, the requester's
   * memory through grant `grant`, when the request named one: the one copy
   * of the transfer; else through the ring or inline.
   */
  #respond(dqpn: number, psn: number, seq: number, response: WireResponse, sink?: Uint8Array[], grant = 0): void {
    const data = response.data;
    const length = data !== undefined ? totalLength(data) : 0;
    let placement: Placement = Placement.NONE;
    let locator = 0;
    if (data !== undefined && length > 0) {
      if (sink !== undefined) {
        const landed = Math.min(length, totalLength(sink));
        copyAcross(data, sink, landed);
        this.#host.counters.directBytes += landed;
        this.#sliceBytes += landed;
        this.#builder.response(dqpn, psn, seq, response, Placement.GRANT, grant, landed);
        this.#packetAdded();
        return;
      }
      locator = this.#tx?.put(data, length) ?? -1;
      if (locator >= 0) {
        placement = Placement.RING;
        this.#host.counters.ringBytesSent += length;
      } else if (this.#bulkTx !== undefined && length >= BULK_MIN_BYTES) {
        placement = Placement.STREAM;
        locator = this.#bulkTx.write(data, length);
        this.#host.counters.streamBytesSent += length;
      } else {
        placement = Placement.INLINE;
        locator = this.#builder.addInline(gather(data, length));
        this.#host.counters.inlineBytesSent += length;
      }
    }
    this.#sliceBytes += length;
    this.#builder.response(dqpn, psn, seq, response, placement, locator, length);
    this.#packetAdded();
  }

  #packetAdded(): void {
    if (this.#builder.inlineBytes >= FLUSH_INLINE_BYTES || this.#builder.bytes >= FLUSH_PACKET_BYTES) this.#writeFrame();
    else this.#schedule();
  }

  #schedule(): void {
    if (this.#flushQueued) return;
    this.#flushQueued = true;
    process.nextTick(this.#flushTask);
    // The turn ends in the check phase: the next one may copy its share.
    if (this.#turnQueued) return;
    this.#turnQueued = true;
    setImmediate(this.#turnTask);
  }

  #flush(): void {
    this.#flushQueued = false;
    if (this.#state !== 'open') return;
    if (this.#builder.packets > 0 || this.#announce || this.#rx?.unreported === true) this.#writeFrame();
  }

  /**
   * Writes what the builder holds as one frame, with this side's credit for
   * the peer's ring: through the frame ring when the peer maps it and it
   * has room (waking the peer with an empty message if it sleeps on it),
   * else on the stream.
   */
  #writeFrame(): void {
    const rx = this.#rx;
    const counters = this.#host.counters;
    this.#announce = false;
    counters.framesSent++;
    counters.packetsSent += this.#builder.packets;
    const seq = this.#nextFrameSeq;
    this.#nextFrameSeq = (seq + 1) >>> 0;
    const { packets, inlineData } = this.#builder.take(rx !== undefined ? FRAME_RING_MAPPED : 0, rx !== undefined ? rx.report() : 0, seq);
    const ring = this.#txFrames;
    if (this.#txFramesUsable && ring !== undefined && ring.write(packets, inlineData)) {
      counters.ringFramesSent++;
      if (ring.readerAsleep) this.#stream.write(WAKE);
      return;
    }
    this.#stream.write({ hello: undefined, packets, inlineData });
  }

  #close(reason: string): void {
    if (this.#state === 'closed') return;
    this.#state = 'closed';
    clearTimeout(this.#handshakeTimer);
    this.#firstFrameWaiter?.();
    this.#firstFrameWaiter = undefined;
    this.#helloWaiter?.reject(errno('ECONNRESET', reason));
    this.#helloWaiter = undefined;
    this.#rxQueue.drain();
    this.#unanswered.clear();
    this.#offers?.close();
    // A stream the peer dialled before the handshake failed is nobody's: cancel() closes it.
    this.#bulkOffer?.cancel();
    this.#bulkOffer = undefined;
    this.#bulkTx?.destroy();
    this.#bulkRx?.destroy();
    this.#leaving.clear();
    this.#bulkTx = undefined;
    this.#bulkRx = undefined;
    if (this.#mappings !== undefined) this.#releases.push(this.#mappings.close());
    this.#stream.end();
    this.#host.framePoller.forget(this.#framesSource);
    this.#heldFrames.clear();
    for (const ring of [this.#txMemory, this.#rxMemory]) if (ring !== undefined) this.#releases.push(ring.release());
    this.#tx = undefined;
    this.#rx = undefined;
    this.#txFrames = undefined;
    this.#rxFrames = undefined;
    this.#txMemory = undefined;
    this.#rxMemory = undefined;
    this.#host.logger?.debug({ peer: this.#peerGid, role: this.role, wasOpened: this.#wasOpened, reason }, 'wire: link closed');
    this.#markEnded();
    this.#events.closed(this, reason);
  }
}

/** True when link sequence number `a` was sent before `b` (serial number arithmetic modulo 2^32). */
function seqBefore(a: number, b: number): boolean {
  const distance = (b - a) >>> 0;
  return distance !== 0 && distance < 0x8000_0000;
}

function describe(error: unknown): string {
  return error instanceof Error ? error.message : String(error);
}

/**
 * The link's notice that the responder dropped a request (a status no
 * WcStatus or RNR NAK takes): it frees the request's place on the stream
 * and never reaches the requester's QP as an answer.
 */
const DROPPED: WireResponse = { status: -2 as WireResponse['status'] };

/** A wake-up on the stream: an empty message (no hello, no packets). */
const WAKE: rdma.WireFrame = { hello: undefined, packets: NO_PACKETS, inlineData: [] };

/** The answer to a request whose grant is gone: the requester fetches its memory again. */
const REFETCH_RESPONSE: WireResponse = { status: REFETCH };

/** (source QPN, PSN) as one number: both are 24 bits. */
function unansweredKey(srcQpn: number, psn: number): number {
  return srcQpn * 0x100_0000 + psn;
}
