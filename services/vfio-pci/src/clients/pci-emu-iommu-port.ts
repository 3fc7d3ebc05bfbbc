import type { TlsConfig } from '@p2p/auth';
import type { Logger } from 'pino';
import { pci } from '@p2p/proto';
import { callNotTaken, connectPeer, type Peer } from '@p2p/rpc';
import type { HostExtent, IommuPort, IommuTarget } from '../ports/iommu-port';

/** pci-emu's IommuMap takes at most this many host extents (E2BIG past it): a longer run is mapped in pieces. */
const MAX_EXTENTS_PER_MAP = 4096;

/** How often releases pci-emu did not hear are sent again. */
export const RELEASE_RETRY_MS = 250;

/** A detach or a domain's destruction that pci-emu has yet to hear. */
type Release = { readonly kind: 'detach'; readonly domainId: number; readonly bdf: string } | { readonly kind: 'destroy'; readonly domainId: number };

/**
 * The platform IOMMU as iommufd drives it: pci-emu's IOMMU RPCs, the
 * platform's to call. This vfio-pci is the platform's only user of them:
 * the domains it did not create are an earlier incarnation's (see
 * reclaimStale()).
 */
export class PciEmuIommuPort implements IommuPort {
  readonly #peer: Peer<typeof pci.PciEmuServiceDefinition>;
  /** The domains this incarnation created and has not destroyed. */
  readonly #own = new Set<number>();
  /** Creates and reclaims one at a time: a domain being created is never taken for a stale one. */
  #exclusive: Promise<unknown> = Promise.resolve();
  /** Releases pci-emu did not hear, oldest first, sent again until it answers. */
  readonly #unheard: Release[] = [];
  #retry: NodeJS.Timeout | undefined;
  #draining: Promise<void> | undefined;
  #logger: Logger | undefined;

  /** @param platformToken pci-emu's IOMMU is the platform's: proven on every call. */
  constructor(address: string, platformToken: string, tls: TlsConfig) {
    this.#peer = connectPeer(pci.PciEmuServiceDefinition, address, { name: 'pci-emu', tls, token: platformToken });
  }

  /** Where releases pci-emu did not hear are logged (the server's logger, once it runs). */
  logTo(logger: Logger): void {
    this.#logger = logger;
  }

  /** Releases not yet heard by pci-emu (it was unreachable when they were made). */
  get unheardReleases(): number {
    return this.#unheard.length;
  }

  get #pci(): Peer<typeof pci.PciEmuServiceDefinition>['client'] {
    return this.#peer.client;
  }

  createDomain(): Promise<number> {
    return this.#oneAtATime(async () => {
      const { domainId } = await this.#pci.createIommuDomain({});
      this.#own.add(domainId);
      return domainId;
    });
  }

  /**
   * iommu_domain_free(): cannot fail in the kernel, and does not here. A
   * pci-emu that does not take the call (unreachable, cut off) hears it
   * later, in order after any detach it has not heard either.
   */
  async destroyDomain(domainId: number): Promise<void> {
    await this.#release({ kind: 'destroy', domainId });
  }

  /**
   * A vfio-pci that starts again is a new kernel on the same platform: the
   * iommufd objects of the one before died with it, but the platform
   * domains it made are still attached, each function behind one refusing
   * every later attach (EBUSY) and reaching the dead processes' memory.
   * Detaches and frees every domain this incarnation did not create (and
   * whatever a restarted pci-emu holds: none). Returns what it freed.
   */
  reclaimStale(): Promise<{ domainId: number; bdfs: readonly string[] }[]> {
    return this.#oneAtATime(async () => {
      const { domains } = await this.#pci.listIommuDomains({ domainId: 0 });
      const stale = domains.filter((domain) => !this.#own.has(domain.domainId));
      for (const domain of stale) {
        for (const bdf of domain.bdfs) await this.#pci.detachIommuDomain({ domainId: domain.domainId, bdf });
        await this.#pci.destroyIommuDomain({ domainId: domain.domainId });
      }
      return stale.map((domain) => ({ domainId: domain.domainId, bdfs: domain.bdfs }));
    });
  }

  #oneAtATime<T>(step: () => Promise<T>): Promise<T> {
    const turn = this.#exclusive.then(step);
    this.#exclusive = turn.catch(() => undefined);
    return turn;
  }

  /** A function whose earlier detach pci-emu has not heard is detached first (else it would be EBUSY for good). */
  async attach(domainId: number, bdf: string): Promise<void> {
    if (this.#unheard.length > 0) await this.#drain();
    await this.#pci.attachIommuDomain({ domainId, bdf });
  }

  /**
   * iommu_detach_group(): cannot fail in the kernel, and does not here. A
   * pci-emu that does not take the call hears it later: the platform must
   * not keep a function on the domain of a process that is gone.
   */
  async detach(domainId: number, bdf: string): Promise<void> {
    await this.#release({ kind: 'detach', domainId, bdf });
  }

  /** Sends `release` now, after any older one pci-emu has not heard; on a call pci-emu did not take, keeps it for later. */
  async #release(release: Release): Promise<void> {
    if (this.#unheard.length > 0) {
      this.#unheard.push(release);
      await this.#drain();
      return;
    }
    try {
      await this.#send(release);
    } catch (error) {
      if (!callNotTaken(error)) throw error;
      this.#logger?.warn({ err: error, release }, 'pci-emu did not take an IOMMU release; it is sent again until it does');
      this.#unheard.push(release);
      this.#schedule();
    }
  }

  /** Sends what pci-emu has not heard, in order, until one is not taken again. */
  #drain(): Promise<void> {
    this.#draining ??= (async () => {
      try {
        while (this.#unheard.length > 0) {
          try {
            await this.#send(this.#unheard[0]!);
          } catch (error) {
            if (callNotTaken(error)) {
              this.#schedule();
              return;
            }
            // Any other answer (the domain or the attachment gone with a restarted pci-emu) means nothing is left to release.
            this.#logger?.debug({ err: error, release: this.#unheard[0] }, 'an IOMMU release pci-emu had not heard applies no more');
          }
          this.#unheard.shift();
        }
      } finally {
        this.#draining = undefined;
      }
    })();
    return this.#draining;
  }

  async #send(release: Release): Promise<void> {
    if (release.kind === 'detach') {
      await this.#pci.detachIommuDomain({ domainId: release.domainId, bdf: release.bdf });
      return;
    }
    await this.#pci.destroyIommuDomain({ domainId: release.domainId });
    this.#own.delete(release.domainId);
  }

  #schedule(): void {
    if (this.#retry !== undefined) return;
    this.#retry = setTimeout(() => {
      this.#retry = undefined;
      void this.#drain();
    }, RELEASE_RETRY_MS);
    this.#retry.unref();
  }

  /** A host run of more than MAX_EXTENTS_PER_MAP extents is several maps, undone together if one fails. */
  async map(domainId: number, iova: bigint, length: bigint, prot: number, target: IommuTarget): Promise<void> {
    if (target.kind === 'bar') {
      await this.#pci.iommuMap({ domainId, iova, length, prot, target: { $case: 'bar', value: { bdf: target.bdf, bar: target.bar, offset: target.offset } } });
      return;
    }
    let at = iova;
    try {
      for (let i = 0; i < target.extents.length; i += MAX_EXTENTS_PER_MAP) {
        const piece = target.extents.slice(i, i + MAX_EXTENTS_PER_MAP);
        const pieceLength = BigInt(piece.reduce((sum, extent) => sum + extent.length, 0));
        await this.#pci.iommuMap({ domainId, iova: at, length: pieceLength, prot, target: { $case: 'host', value: { extents: piece.map(toWire) } } });
        at += pieceLength;
      }
    } catch (error) {
      if (at > iova) await this.#pci.iommuUnmap({ domainId, iova, length: at - iova }).catch(() => undefined);
      throw error;
    }
  }

  async unmap(domainId: number, iova: bigint, length: bigint): Promise<bigint> {
    return (await this.#pci.iommuUnmap({ domainId, iova, length })).unmapped;
  }

  close(): void {
    clearTimeout(this.#retry);
    this.#retry = undefined;
    this.#peer.close();
  }
}

function toWire(extent: HostExtent): pci.SegmentExtent {
  return { segment: extent.segment, offset: BigInt(extent.offset), length: BigInt(extent.length) };
}
