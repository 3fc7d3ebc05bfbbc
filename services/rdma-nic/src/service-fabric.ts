import type { TlsConfig } from '@p2p/auth';
import type { RegistrySession } from '@p2p/dmabuf-client';
import type { Logger } from 'pino';
import { RemoteFabric } from './link/remote-fabric';
import type { Fabric, FabricEndpoint } from './transport/fabric';

/** A fabric the service attaches its NIC to. */
export type AttachableFabric = Fabric & { attach(endpoint: FabricEndpoint): void };

/** The deployed fabric, which the service closes at shutdown. */
export type ClosableFabric = AttachableFabric & { close(): Promise<void> };

export interface LinkFabricOptions {
  readonly gid: string;
  readonly wirePort: number;
  /** The TCP port of the bulk streams from NICs on other hosts; 0: any free one; 'off': none. */
  readonly bulkPort: number | 'off';
  /** The NIC's registry session: the wire's shared-memory rings are system-heap dma-bufs. */
  readonly registry: RegistrySession;
  readonly ringBytes: number;
  readonly logger: Logger;
  readonly tls: TlsConfig;
}

/** The NIC-to-NIC wire (RdmaWireService on the GID's address), for a NIC whose fabric is not injected. */
export function startLinkFabric(options: LinkFabricOptions): Promise<RemoteFabric> {
  return RemoteFabric.start(options);
}
