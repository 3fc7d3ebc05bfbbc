import type { TlsConfig } from '@p2p/auth';
import { pci } from '@p2p/proto';
import { connectPeer, type Peer } from '@p2p/rpc';
import type { HostExtent, IommuPort, IommuTarget } from '../ports/iommu-port';

/** pci-emu's IommuMap takes at most this many host extents (E2BIG past it): a longer run is mapped in pieces. */
const MAX_EXTENTS_PER_MAP = 4096;

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

  /** @param platformToken pci-emu's IOMMU is the platform's: proven on every call. */
  constructor(address: string, platformToken: string, tls: TlsConfig) {
    this.#peer = connectPeer(pci.PciEmuServiceDefinition, address, { name: 'pci-emu', tls, token: platformToken });
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

  async destroyDomain(domainId: number): Promise<void> {
    await this.#pci.destroyIommuDomain({ domainId });
    this.#own.delete(domainId);
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

  async attach(domainId: number, bdf: string): Promise<void> {
    await this.#pci.attachIommuDomain({ domainId, bdf });
  }

  async detach(domainId: number, bdf: string): Promise<void> {
    await this.#pci.detachIommuDomain({ domainId, bdf });
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
    this.#peer.close();
  }
}

function toWire(extent: HostExtent): pci.SegmentExtent {
  return { segment: extent.segment, offset: BigInt(extent.offset), length: BigInt(extent.length) };
}
