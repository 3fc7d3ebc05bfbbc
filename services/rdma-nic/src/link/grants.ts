import { performance } from 'node:perf_hooks';
import type { DmaBufImporter, RegistrySession } from '@p2p/dmabuf-client';
import { errno } from '@p2p/errno';
import { dmabuf } from '@p2p/proto';
import type { Logger } from 'pino';
import type { GrantSource } from '../memory/memory';
import { GrantState } from './wire-layout';

/**
 * Grants: how a payload moves once between two NICs on one registry.
 *
 * The requester's MRs are dma-bufs of the registry. A requester that sends a
 * one-SGE message from (or READs into) such an MR offers the peer the
 * dma-buf itself: the registry passes the fd its holder registered the MR
 * with to the peer NIC's process (SendFd/ReceiveFd: a token only that
 * process can redeem), and the peer attaches it with the requester's BDF,
 * so that it reaches exactly what the requester reaches, and maps it. From
 * then on the request names (grant id, offset) and the responder, once it
 * has checked rkey, access, bounds and PSN as for any request, copies
 * straight from the requester's MR into its own (WRITE, SEND) or from its
 * own into the requester's (READ): one memcpy per transfer. A peer can only
 * ever reach what the registry handed it; an id it does not hold, or a
 * range past the buffer, is a protocol error that ends the link.
 *
 * Revocation holds on both sides because both are importers: the
 * requester's MR has its attachment, the peer's grant has its own, and the
 * exporter's revoke waits for every ack. The peer's move_notify marks the
 * grant GONE before it acks (and the copies are synchronous, so none is
 * running); a request that names a grant gone since is answered REFETCH, and
 * the requester fetches its SGEs again, as after a page fault of its own:
 * through the ring if the memory is back, LOC_PROT_ERR if it stays revoked.
 * A grant that cannot be made (the holder closed the fd, the peer shares no
 * tmpfs, the topology refuses the peer's attach) leaves the messages on the
 * ring, and is not tried again for RETRY_AFTER_GONE_MS.
 */

/** How long a source whose grant was refused or lost goes through the ring before it is offered again. */
export const RETRY_AFTER_GONE_MS = 1000;

/** What the grant tables need of their link: the registry session and the packets to send. */
export interface GrantLink {
  readonly session: RegistrySession;
  readonly logger: Logger | undefined;
  /** The link is open: packets may be sent. */
  readonly sending: boolean;
  sendOffer(id: number, bufferId: bigint, size: number, token: string, bdf: string): void;
  sendState(id: number, state: GrantState): void;
  sendDrop(id: number): void;
}

interface Offer {
  readonly id: number;
  readonly source: GrantSource;
  state: 'offering' | 'mapped' | 'gone';
  /** The GRANT_OFFER went out (its token was made). */
  sent: boolean;
  goneAt: number;
  unsubscribe: () => void;
}

/** The requester's side of one link: the sources it offered the peer, by source and by id. */
export class GrantOffers {
  readonly #link: GrantLink;
  readonly #peerPid: number;
  readonly #bySource = new Map<GrantSource, Offer>();
  readonly #byId = new Map<number, Offer>();
  #nextId = 1;
  #closed = false;

  constructor(link: GrantLink, peerPid: number) {
    this.#link = link;
    this.#peerPid = peerPid;
  }

  /**
   * The id a request may name `source` by, once the peer mapped it; else
   * undefined, and the message goes through the ring while an offer is
   * made (one at a time per source).
   */
  id(source: GrantSource): number | undefined {
    const offer = this.#bySource.get(source);
    if (offer !== undefined) {
      if (offer.state === 'mapped') return offer.id;
      if (offer.state === 'offering' || performance.now() - offer.goneAt < RETRY_AFTER_GONE_MS) return undefined;
      this.#forget(offer);
    }
    if (!this.#closed && !source.released) this.#offer(source);
    return undefined;
  }

  /** GRANT_STATE from the peer. False for an id never offered (a protocol error). */
  state(id: number, state: number): boolean {
    const offer = this.#byId.get(id);
    if (offer === undefined) return id > 0 && id < this.#nextId;
    if (state === GrantState.MAPPED && offer.state === 'offering') {
      offer.state = 'mapped';
    } else if (state === GrantState.GONE) {
      offer.state = 'gone';
      offer.goneAt = performance.now();
      // The peer lets go of the id once it hears this side will not name it again.
      this.#link.sendDrop(id);
      this.#byId.delete(id);
    }
    return true;
  }

  close(): void {
    this.#closed = true;
    for (const offer of this.#bySource.values()) offer.unsubscribe();
    this.#bySource.clear();
    this.#byId.clear();
  }

  #offer(source: GrantSource): void {
    const id = this.#nextId++;
    const offer: Offer = { id, source, state: 'offering', sent: false, goneAt: 0, unsubscribe: () => undefined };
    this.#bySource.set(source, offer);
    this.#byId.set(id, offer);
    offer.unsubscribe = source.onRelease(() => this.#released(offer));
    this.#link.session.sendFd(source.fd, this.#peerPid, source.holderPid).then(
      (token) => {
        if (this.#closed || !this.#link.sending) return;
        offer.sent = true;
        this.#link.sendOffer(id, source.bufferId, source.size, token, source.importerBdf);
        // Released while the token was made: the peer redeems it and lets go at once.
        if (this.#byId.get(id) !== offer) this.#link.sendDrop(id);
      },
      (error: unknown) => {
        this.#link.logger?.debug({ err: error, fd: source.fd, pid: source.holderPid }, 'wire: no grant of the MR memory; its messages go through the ring');
        if (this.#byId.get(id) !== offer) return;
        offer.state = 'gone';
        offer.goneAt = performance.now();
        this.#byId.delete(id);
      },
    );
  }

  /**
   * The MR went: the peer releases its grant, after every request that
   * named it (the stream delivers those first). An offer whose token is
   * still being made is dropped as soon as it is sent.
   */
  #released(offer: Offer): void {
    this.#forget(offer);
    if (offer.state !== 'gone' && offer.sent && !this.#closed && this.#link.sending) this.#link.sendDrop(offer.id);
  }

  #forget(offer: Offer): void {
    offer.unsubscribe();
    if (this.#bySource.get(offer.source) === offer) this.#bySource.delete(offer.source);
    if (this.#byId.get(offer.id) === offer) this.#byId.delete(offer.id);
  }
}

interface Mapping {
  readonly id: number;
  readonly size: number;
  state: 'mapping' | 'mapped' | 'gone';
  fd: number | undefined;
  importer: DmaBufImporter | undefined;
}

/** The responder's side of one link: the requester's memory it was granted, by id. */
export class GrantMappings {
  readonly #link: GrantLink;
  readonly #byId = new Map<number, Mapping>();
  readonly #releases: Promise<void>[] = [];
  #closed = false;

  constructor(link: GrantLink) {
    this.#link = link;
  }

  /** GRANT_OFFER: redeem, attach and map, then say MAPPED or GONE. Returns a protocol problem, if any. */
  offered(id: number, bufferId: bigint, size: number, token: string, bdf: string): string | undefined {
    if (this.#byId.has(id)) return `grant ${id} offered twice`;
    const mapping: Mapping = { id, size, state: 'mapping', fd: undefined, importer: undefined };
    this.#byId.set(id, mapping);
    void this.#map(mapping, bufferId, token, bdf);
    return undefined;
  }

  /**
   * Views of [offset, offset + length) of grant `id`: true; false when the
   * grant is gone (the requester must fetch again); undefined when the
   * requester named something it holds no grant for (a protocol error).
   */
  views(id: number, offset: number, length: number, out: Uint8Array[]): boolean | undefined {
    const mapping = this.#byId.get(id);
    if (mapping === undefined || offset + length > mapping.size) return undefined;
    if (mapping.state === 'gone') return false;
    if (mapping.state !== 'mapped') return undefined;
    if (mapping.importer!.views(offset, length, out)) return true;
    this.#lost(mapping);
    return false;
  }

  /** GRANT_DROP: the requester will not name `id` again. */
  dropped(id: number): void {
    const mapping = this.#byId.get(id);
    if (mapping === undefined) return;
    this.#byId.delete(id);
    mapping.state = 'gone';
    this.#release(mapping);
  }

  /** Releases every grant; resolves once their attachments and fds are gone. */
  async close(): Promise<void> {
    this.#closed = true;
    for (const mapping of this.#byId.values()) {
      mapping.state = 'gone';
      this.#release(mapping);
    }
    this.#byId.clear();
    await Promise.all(this.#releases);
  }

  async #map(mapping: Mapping, bufferId: bigint, token: string, bdf: string): Promise<void> {
    const { session, logger } = this.#link;
    try {
      mapping.fd = await session.receiveFd(token);
      if (mapping.state !== 'mapping') return this.#release(mapping);
      // Attached as the requester's function: the topology gives the peer exactly the reach the requester has.
      const importer = await session.importDmaBuf({ fd: mapping.fd!, importerBdf: bdf, peer2peer: true, onMoveNotify: () => this.#lost(mapping) });
      mapping.importer = importer;
      if (mapping.state !== 'mapping') return this.#release(mapping);
      if (importer.bufferId !== bufferId || mapping.importer.size !== mapping.size) {
        throw errno('EINVAL', `the granted fd names buffer ${importer.bufferId} of ${importer.size} bytes, not buffer ${bufferId} of ${mapping.size}`);
      }
      const { transport } = await importer.map();
      if (transport !== dmabuf.Transport.TRANSPORT_SHARED_MEMORY) throw errno('EOPNOTSUPP', "the requester's memory is not in this NIC's tmpfs");
      if (mapping.state !== 'mapping') return this.#release(mapping);
      mapping.state = 'mapped';
      if (this.#link.sending) this.#link.sendState(mapping.id, GrantState.MAPPED);
    } catch (error) {
      logger?.debug({ err: error, grant: mapping.id }, "wire: cannot map the requester's memory; its messages go through the ring");
      this.#lost(mapping);
    }
  }

  /** Refused, or a move_notify took it (before the ack: no copy runs after). The requester hears GONE and drops it. */
  #lost(mapping: Mapping): void {
    if (mapping.state === 'gone') return;
    mapping.state = 'gone';
    if (!this.#closed && this.#link.sending) this.#link.sendState(mapping.id, GrantState.GONE);
    this.#release(mapping);
  }

  /** Lets go of what the mapping holds now (an attach or redeem still under way is let go of when it ends). */
  #release(mapping: Mapping): void {
    const { importer, fd } = mapping;
    mapping.importer = undefined;
    mapping.fd = undefined;
    if (importer === undefined && fd === undefined) return;
    const { session } = this.#link;
    // Failures are moot: they mean the session is gone, and the registry released everything of it already.
    this.#releases.push(Promise.allSettled([importer?.detach(), fd !== undefined ? session.closeFd(fd) : undefined]).then(() => undefined));
  }
}
