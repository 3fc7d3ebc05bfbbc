import { Metadata } from '@grpc/grpc-js';
import { channelCredentials, type TlsConfig } from '@p2p/auth';
import { errno } from '@p2p/errno';
import { pci } from '@p2p/proto';
import { errnoOf } from '@p2p/status';

export type P2pMapType = 'BUS_ADDR' | 'THRU_HOST_BRIDGE' | 'NOT_SUPPORTED';

/**
 * pci_p2pdma_map_type() answered by pci-emu's topology. The topology does not
 * change while pci-emu runs, so answers are cached per (provider, client)
 * pair, as the kernel caches them in the p2pdma map_types xarray.
 */
export class PciEmuP2pOracle {
  private readonly client: pci.PciEmuServiceClient;
  private readonly cache = new Map<string, P2pMapType>();

  constructor(address: string, tls: TlsConfig, private readonly deadlineMs = 2000) {
    this.client = new pci.PciEmuServiceClient(address, channelCredentials(tls));
  }

  mapType(providerBdf: string, clientBdf: string): Promise<P2pMapType> {
    const key = `${providerBdf}>${clientBdf}`;
    const cached = this.cache.get(key);
    if (cached) return Promise.resolve(cached);
    return new Promise((resolve, reject) => {
      this.client.getP2PDistance(
        { providerBdf, clientBdf },
        new Metadata(),
        { deadline: Date.now() + this.deadlineMs },
        (error, response) => {
          if (error) {
            const name = errnoOf(error);
            reject(name ? errno(name, `pci-emu: ${error.details}`) : errno('EIO', `pci-emu unreachable for the P2P distance of ${key}: ${error.details}`));
            return;
          }
          const type = toMapType(response.mapType);
          this.cache.set(key, type);
          resolve(type);
        },
      );
    });
  }

  close(): void {
    this.client.close();
  }
}

function toMapType(type: pci.P2pMapType): P2pMapType {
  if (type === pci.P2pMapType.P2P_MAP_TYPE_BUS_ADDR) return 'BUS_ADDR';
  if (type === pci.P2pMapType.P2P_MAP_TYPE_THRU_HOST_BRIDGE) return 'THRU_HOST_BRIDGE';
  return 'NOT_SUPPORTED';
}
