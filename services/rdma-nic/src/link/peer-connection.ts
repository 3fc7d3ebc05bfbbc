import { performance } from 'node:perf_hooks';
import { channelCredentials, tlsTargetName } from '@p2p/auth';
import { rdma } from '@p2p/proto';
import { totalLength } from '../memory/copy';
import type { WireRequest } from '../transport/fabric';
import { gather } from './gather';
import type { PendingRequest } from './pending-requests';
import { type LinkHost, WireLink } from './wire-link';
import { RECONNECT_MAX_MS, RECONNECT_MIN_MS, WIRE_CHANNEL_OPTIONS, WIRE_TLS_NAME } from './wire-options';

/**
 * A request waiting for the link to open, with its own copy of the payload
 * (the caller's views are gone by then). Its transport timer is not running
 * yet: `arm` starts it when the request is sent, or when the peer turns out
 * to be unreachable.
 */
interface QueuedRequest {
  readonly dqpn: number;
  readonly request: WireRequest;
  readonly arm: () => PendingRequest;
  readonly payload: Buffer | undefined;
}

/**
 * This NIC's requests to one peer NIC: the stream it opened to it (see
 * WireLink), opened on the first request and again on the first request
 * after it failed. Requests made while it is being opened wait for it, their
 * transport timers not yet started (the timer covers the wire, not the
 * handshake); if the attempt fails, their timers start then, and the
 * requester's retries dial again. A peer that cannot be reached is dialled at most once
 * per RECONNECT_MIN_MS, backing off to RECONNECT_MAX_MS, and only while
 * something waits to be sent.
 */
export class PeerConnection {
  readonly gid: string;
  readonly #host: LinkHost;
  readonly #address: string;
  #client: rdma.RdmaWireServiceClient | undefined;
  #link: WireLink | undefined;
  #queue: QueuedRequest[] = [];
  #backoffMs = RECONNECT_MIN_MS;
  #nextAttemptAt = 0;
  #retryTimer: NodeJS.Timeout | undefined;
  #closed = false;
  /** Every link this connection made, until it settled: close() waits for them. */
  readonly #links = new Set<WireLink>();

  constructor(host: LinkHost, gid: string, address: string) {
    this.#host = host;
    this.gid = gid;
    this.#address = address;
  }

  /** The open link, if any. */
  get link(): WireLink | undefined {
    return this.#link?.open === true ? this.#link : undefined;
  }

  request(dqpn: number, request: WireRequest, arm: () => PendingRequest): void {
    const link = this.link;
    if (link !== undefined) {
      link.sendRequest(dqpn, request, arm());
      return;
    }
    if (this.#closed) {
      arm();
      return;
    }
    const length = totalLength(request.payload);
    const payload = length > 0 ? gather(request.payload, length) : undefined;
    // The caller's views are not to be touched after this call: the copy stands in for them.
    this.#queue.push({ dqpn, request: { ...request, payload: [] }, arm, payload });
    this.#connectSoon();
  }

  /** Ends the link and stops reconnecting; resolves once every link released its rings. */
  async close(): Promise<void> {
    this.#closed = true;
    clearTimeout(this.#retryTimer);
    const queued = this.#queue;
    this.#queue = [];
    for (const { arm } of queued) arm();
    this.#link?.close('the fabric is closing');
    this.#client?.close();
    await Promise.all([...this.#links].map((link) => link.settled()));
  }

  #connectSoon(): void {
    if (this.#closed || this.#link !== undefined || this.#retryTimer !== undefined) return;
    const wait = this.#nextAttemptAt - performance.now();
    if (wait <= 0) {
      this.#connect();
      return;
    }
    this.#retryTimer = setTimeout(() => {
      this.#retryTimer = undefined;
      this.#connectSoon();
    }, Math.ceil(wait));
  }

  #connect(): void {
    this.#nextAttemptAt = performance.now() + this.#backoffMs;
    // Peers are dialled by their GID's IP address; their certificate names the wire.
    this.#client ??= new rdma.RdmaWireServiceClient(this.#address, channelCredentials(this.#host.tls), {
      ...WIRE_CHANNEL_OPTIONS,
      ...tlsTargetName(this.#host.tls, WIRE_TLS_NAME),
    });
    const link = WireLink.connect(this.#host, this.#client, this.gid, {
      opened: () => this.#opened(link),
      closed: (_link, reason) => this.#linkClosed(link, reason),
    });
    this.#link = link;
    this.#links.add(link);
    void link.settled().then(() => this.#links.delete(link));
  }

  #opened(link: WireLink): void {
    this.#backoffMs = RECONNECT_MIN_MS;
    const queued = this.#queue;
    this.#queue = [];
    for (const { dqpn, request, arm, payload } of queued) {
      const entry = arm();
      if (link.open) link.sendRequest(dqpn, request, entry, payload);
    }
  }

  #linkClosed(link: WireLink, reason: string): void {
    if (this.#link !== link) return;
    this.#link = undefined;
    if (this.#closed) return;
    if (!link.wasOpened) {
      this.#host.counters.connectFailures++;
      this.#backoffMs = Math.min(2 * this.#backoffMs, RECONNECT_MAX_MS);
      this.#host.logger?.debug({ peer: this.gid, reason, nextBackoffMs: this.#backoffMs }, 'wire: cannot reach the peer');
    }
    // The attempt failed: what waited for it is sent into the void, and times out as for a dead peer.
    const queued = this.#queue;
    this.#queue = [];
    for (const { arm } of queued) arm();
  }
}
