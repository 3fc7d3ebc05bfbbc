import { Server, type ServerDuplexStream, type ServiceDefinition } from '@grpc/grpc-js';
import { PLAINTEXT, serverCredentials, type TlsConfig } from '@p2p/auth';
import type { RegistrySession } from '@p2p/dmabuf-client';
import { errno } from '@p2p/errno';
import { rdma } from '@p2p/proto';
import type { Logger } from 'pino';
import type { Fabric, FabricEndpoint, WireReply, WireRequest } from '../transport/fabric';
import { BulkListener } from './bulk-stream';
import { canonicalGid, gidAddress, gidBytes, gidHost } from './gid';
import { PeerConnection } from './peer-connection';
import { type PendingRequest, PendingRequests } from './pending-requests';
import { checkRingBytes } from './ring';
import { type WireCounters, zeroCounters } from './wire-counters';
import { type LinkHost, MalformedMessage, WireLink } from './wire-link';
import { WIRE_CHANNEL_OPTIONS } from './wire-options';
import { type PolledSource, TurnPoller } from '../turn-poller';

/** RoCEv2's UDP destination port (IANA), the wire port of every NIC by default. */
export const DEFAULT_WIRE_PORT = 4791;
export const DEFAULT_RING_BYTES = 64 * 1024 * 1024;

export interface RemoteFabricOptions {
  /**
   * This NIC's GID as IPv6 text; RoCEv2 derives it from the port's IP
   * address ("::ffff:127.0.0.2"). The wire server binds that address, and
   * other NICs reach this one there.
   */
  readonly gid: string;
  /** The port every NIC of the deployment serves the wire on; default DEFAULT_WIRE_PORT. */
  readonly wirePort?: number;
  /** This NIC process's registry session: the rings are system-heap dma-bufs passed between the NICs. */
  readonly registry: RegistrySession;
  /**
   * The TCP port of bulk streams (payloads from NICs on other registries),
   * on the GID's address; default 0, any free one; 'off': none, those
   * payloads go inline on the stream.
   */
  readonly bulkPort?: number | 'off';
  /** Bytes of each payload ring, a power of two in [64 KiB, 1 GiB]; default DEFAULT_RING_BYTES. Each link has two. */
  readonly ringBytes?: number;
  readonly logger?: Logger;
  /** TLS for the wire (P2P_TLS_*): its server and its connections to peers; default plaintext. */
  readonly tls?: TlsConfig;
}

/** The host a fabric shares with its links, with the endpoint that attach() sets. */
interface FabricHost extends LinkHost {
  endpoint: FabricEndpoint | undefined;
  bulk: BulkListener | undefined;
}

/**
 * The wire between the emulated RDMA NICs of separate processes: a Fabric
 * whose requests reach the NIC that owns the destination GID over gRPC
 * (RdmaWireService.Connect, one stream per requester and responder NIC),
 * with payload bytes crossing shared-memory rings rather than the stream
 * whenever the two NICs share the registry's tmpfs (see WireLink).
 *
 * Requests from this NIC to each peer go on the stream this NIC opened to
 * it, and their answers come back on that stream; requests from a peer
 * arrive on the streams it opened to this NIC's server and are answered by
 * the attached endpoint, synchronously, on the same stream. A request that
 * finds no link is held while one is opened; every request is answered
 * through its reply exactly once: with the peer's answer, or with undefined
 * when its timeoutMs passes first (the peer is down, partitioned, or dropped
 * it) or the fabric closes.
 */
export class RemoteFabric implements Fabric {
  readonly gid: string;
  readonly #host: FabricHost;
  readonly #counters: WireCounters;
  readonly #server: Server;
  #port = 0;
  /** Outgoing connections by canonical GID, and by the GID text requests name them with. */
  readonly #peers = new Map<string, PeerConnection>();
  readonly #peersByName = new Map<string, PeerConnection>();
  /** Streams peers opened to this NIC, until settled; and the latest open one from each GID. */
  readonly #accepted = new Set<WireLink>();
  readonly #acceptedFrom = new Map<string, WireLink>();
  #closing: Promise<void> | undefined;

  private constructor(options: RemoteFabricOptions, gid: string, ringBytes: number) {
    this.gid = gid;
    this.#counters = zeroCounters();
    const logger = options.logger;
    this.#host = {
      gid,
      gidBytes: gidBytes(gid),
      session: options.registry,
      ringBytes,
      counters: this.#counters,
      pending: new PendingRequests((error) => logger?.error({ err: error }, 'wire: a reply callback threw')),
      logger,
      tls: options.tls ?? PLAINTEXT,
      endpoint: undefined,
      framePoller: new TurnPoller<PolledSource>(),
      bulk: undefined,
    };
    this.#server = new Server(WIRE_CHANNEL_OPTIONS);
    this.#server.addService(tolerantWireService(), { connect: (call: ServerDuplexStream<rdma.ConnectRequest | MalformedMessage, rdma.ConnectResponse>) => this.#accept(call) });
  }

  /** Serves the wire on the GID's address and wirePort. EINVAL for a bad GID or ring size, EBUSY if the address cannot be bound. */
  static async start(options: RemoteFabricOptions): Promise<RemoteFabric> {
    const gid = canonicalGid(options.gid);
    const ringBytes = options.ringBytes ?? DEFAULT_RING_BYTES;
    checkRingBytes(ringBytes);
    const fabric = new RemoteFabric(options, gid, ringBytes);
    const address = `${gidHost(gid)}:${options.wirePort ?? DEFAULT_WIRE_PORT}`;
    fabric.#port = await new Promise<number>((resolve, reject) => {
      fabric.#server.bindAsync(address, serverCredentials(fabric.#host.tls), (error, port) =>
        error !== null ? reject(errno('EBUSY', `cannot serve the wire on ${address}: ${error.message}`)) : resolve(port),
      );
    });
    const bulkPort = options.bulkPort ?? 0;
    try {
      if (bulkPort !== 'off') fabric.#host.bulk = await BulkListener.start(gidAddress(gid), bulkPort, fabric.#host.tls, options.logger);
    } catch (error) {
      fabric.#server.forceShutdown();
      throw error;
    }
    options.logger?.info({ gid, address, bulkPort: fabric.#host.bulk?.port ?? 'off', ringBytes }, 'wire: serving');
    return fabric;
  }

  /** The port the wire is served on. */
  get port(): number {
    return this.#port;
  }

  /** The TCP port of the bulk streams; 0 when they are off. */
  get bulkPort(): number {
    return this.#host.bulk?.port ?? 0;
  }

  /** A snapshot of what the wire carried so far. */
  get counters(): WireCounters {
    return { ...this.#counters, timeouts: this.#host.pending.timeouts };
  }

  /** The NIC that answers the requests peers send to this GID. EINVAL if its GID is not the fabric's. */
  attach(endpoint: FabricEndpoint): void {
    if (canonicalGid(endpoint.gid) !== this.gid) throw errno('EINVAL', `endpoint ${endpoint.gid} attached to the wire of ${this.gid}`);
    this.#host.endpoint = endpoint;
  }

  request(dgid: string, dqpn: number, request: WireRequest, timeoutMs: number, reply: WireReply): void {
    if (this.#closing !== undefined) {
      reply(undefined);
      return;
    }
    // The transport timer starts when the request goes on the wire: a link still being opened does not eat its timeout.
    const arm = (): PendingRequest => this.#host.pending.add(request.srcQpn, request.psn, timeoutMs, reply);
    const peer = this.#peer(dgid);
    if (peer === undefined) {
      // A GID that is no address reaches nothing: the request times out as for an unreachable one.
      arm();
      return;
    }
    peer.request(dqpn, request, arm);
  }

  rnrCleared(dgid: string, dqpn: number): void {
    if (this.#closing !== undefined) return;
    const gid = this.#peer(dgid)?.gid;
    if (gid === undefined) return;
    // The requester's own stream is where it listens for answers; a hint nobody can carry is lost, and its RNR timer covers it.
    (this.#acceptedFrom.get(gid) ?? this.#peers.get(gid)?.link)?.sendRnrCleared(dqpn);
  }

  /**
   * Stops serving, ends every stream, answers every waiting request with
   * undefined and releases the rings. Later requests are answered undefined
   * at once.
   */
  close(): Promise<void> {
    this.#closing ??= this.#shutdown();
    return this.#closing;
  }

  async #shutdown(): Promise<void> {
    const peers = [...this.#peers.values()].map((peer) => peer.close());
    const accepted = [...this.#accepted].map((link) => {
      link.close('the fabric is closing');
      return link.settled();
    });
    this.#server.forceShutdown();
    this.#host.pending.close();
    await Promise.all([...peers, ...accepted, this.#host.bulk?.close()]);
    this.#host.logger?.info({ gid: this.gid }, 'wire: closed');
  }

  /** The connection to the NIC of `dgid`, made on first use; undefined for a GID that is not an address. */
  #peer(dgid: string): PeerConnection | undefined {
    const named = this.#peersByName.get(dgid);
    if (named !== undefined) return named;
    let gid: string;
    try {
      gid = canonicalGid(dgid);
    } catch (error) {
      this.#host.logger?.debug({ dgid, err: error }, 'wire: no such address');
      return undefined;
    }
    let peer = this.#peers.get(gid);
    if (peer === undefined) {
      peer = new PeerConnection(this.#host, gid, `${gidHost(gid)}:${this.#port}`);
      this.#peers.set(gid, peer);
    }
    this.#peersByName.set(dgid, peer);
    return peer;
  }

  #accept(call: ServerDuplexStream<rdma.ConnectRequest | MalformedMessage, rdma.ConnectResponse>): void {
    if (this.#closing !== undefined) {
      call.end();
      return;
    }
    const link = WireLink.accept(this.#host, call, {
      opened: (opened) => this.#acceptedFrom.set(opened.peerGid, opened),
      closed: (closed) => {
        if (this.#acceptedFrom.get(closed.peerGid) === closed) this.#acceptedFrom.delete(closed.peerGid);
      },
    });
    this.#accepted.add(link);
    void link.settled().then(() => this.#accepted.delete(link));
  }
}

/**
 * RdmaWireService with a request decoder that cannot throw: bytes that are
 * no ConnectRequest decode to a MalformedMessage, which the link refuses
 * with EINVAL (WireLink.accept). grpc-js would answer the throw itself, with
 * INTERNAL and no errno, for what is the peer's mistake.
 */
function tolerantWireService(): ServiceDefinition {
  const { connect } = rdma.RdmaWireServiceService;
  const requestDeserialize = (bytes: Buffer): rdma.ConnectRequest | MalformedMessage => {
    try {
      return connect.requestDeserialize(bytes);
    } catch (error) {
      return new MalformedMessage(error instanceof Error ? error.message : String(error));
    }
  };
  return { connect: { ...connect, requestDeserialize } };
}
