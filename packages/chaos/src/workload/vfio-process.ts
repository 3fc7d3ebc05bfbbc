import type { RegistrySession } from '@p2p/dmabuf-client';
import { iommufd, vfio } from '@p2p/proto';
import { connectPeer } from '@p2p/rpc';
import { errnoOf } from '@p2p/status';
import type { VfioClients } from '@p2p/user-driver';
import type { Deployment } from '../driver/driver';

/** A workload process's channels to vfio-pci, as that process (its credential), and how to close them. */
export interface VfioChannels {
  readonly clients: VfioClients;
  close(): void;
}

export function vfioChannels(deployment: Deployment, session: RegistrySession): VfioChannels {
  const as = { name: 'vfio-pci', tls: deployment.tls, token: session.credential };
  const device = connectPeer(vfio.VfioPciServiceDefinition, deployment.vfioPci, as);
  const deviceIommufd = connectPeer(vfio.VfioDeviceIommufdServiceDefinition, deployment.vfioPci, as);
  const dev = connectPeer(iommufd.IommufdServiceDefinition, deployment.vfioPci, as);
  return {
    clients: { device: device.client, deviceIommufd: deviceIommufd.client, iommufd: dev.client },
    close: () => [device, deviceIommufd, dev].forEach((peer) => peer.close()),
  };
}

/**
 * The administrator's bind of `bdf` to vfio-pci, as writing sysfs is root's
 * (EBUSY: bound already, by an earlier incarnation or another workload; a
 * replugged function comes back unbound).
 */
export async function bindToVfioPci(deployment: Deployment, bdf: string): Promise<void> {
  const admin = connectPeer(vfio.VfioPciServiceDefinition, deployment.vfioPci, { name: 'vfio-pci', tls: deployment.tls, token: deployment.adminToken });
  try {
    await admin.client.bind({ bdf, variants: undefined }).catch((error: unknown) => {
      if (errnoOf(error) !== 'EBUSY') throw error;
    });
  } finally {
    admin.close();
  }
}
