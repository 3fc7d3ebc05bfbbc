import type { TlsConfig } from '@p2p/auth';
import { pci } from '@p2p/proto';
import { connectPeer, type Peer } from '@p2p/rpc';

export type P2pMapType = 'BUS_ADDR' | 'THRU_HOST_BRIDGE' | 'NOT_SUPPORTED';

/**
 * pci_p2pdma_map_type() answered by pci-emu's topology. The topology does not
 * change while pci-emu runs, so answers are cached per (provider, client)
 * pair, as the kernel caches them in the p2pdma map_types xarray. pci-emu's
 * errno is kept; one that cannot be reached in time is EIO (ETIMEDOUT past
 * the deadline).
 */
export class PciEmuP2pOracle {
  readonly #peer: Peer<typeof pci.PciEmuServiceDefinition>;
  readonly #cache = new Map<string, P2pMapType>();

  constructor(address: string, tls: TlsConfig, deadlineMs = 2000) {
    this.#peer = connectPeer(pci.PciEmuServiceDefinition, address, { name: 'pci-emu', tls, deadlineMs });
  }

  async mapType(providerBdf: string, clientBdf: string): Promise<P2pMapType> {
    const key = `${providerBdf}>${clientBdf}`;
    const cached = this.#cache.get(key);
    if (cached) return cached;
    const type = toMapType((await this.#peer.client.getP2pDistance({ providerBdf, clientBdf })).mapType);
    this.#cache.set(key, type);
    return type;
  }

  close(): void {
    this.#peer.close();
  }
}

function toMapType(type: pci.P2pMapType): P2pMapType {
  if (type === pci.P2pMapType.P2P_MAP_TYPE_BUS_ADDR) return 'BUS_ADDR';
  if (type === pci.P2pMapType.P2P_MAP_TYPE_THRU_HOST_BRIDGE) return 'THRU_HOST_BRIDGE';
  return 'NOT_SUPPORTED';
}
