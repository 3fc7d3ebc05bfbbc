import type { TlsConfig } from '@p2p/auth';
import { errno } from '@p2p/errno';
import { pci } from '@p2p/proto';
import { connectPeer, peerUnreachable } from '@p2p/rpc';
import type { NicFunction } from './context/device-attr';

/**
 * The PCI function the NIC drives, as pci-emu's topology has it: ENODEV
 * unless it exists, is present and is a NIC (a driver binds only to a
 * device it knows, as mlx5_core's PCI id table). A pci-emu that cannot be
 * reached rejects with that PeerError (peerUnreachable), for the caller to
 * retry.
 */
export async function findNicFunction(address: string, bdf: string, tls: TlsConfig): Promise<NicFunction> {
  const peer = connectPeer(pci.PciEmuServiceDefinition, address, { name: 'pci-emu', tls });
  let fn: pci.FunctionInfo | undefined;
  try {
    fn = (await peer.client.getFunction({ bdf })).function;
  } catch (error) {
    if (peerUnreachable(error)) throw error;
    throw errno('ENODEV', `no NIC function ${bdf} in pci-emu: ${(error as Error).message}`);
  } finally {
    peer.close();
  }
  if (fn === undefined || !fn.present || fn.kind !== pci.FunctionKind.FUNCTION_KIND_NIC) {
    throw errno('ENODEV', `${bdf} is not a NIC function present in pci-emu's topology${fn === undefined ? '' : ` (it is a ${pci.functionKindToJSON(fn.kind)}${fn.present ? '' : ', unplugged'})`}`);
  }
  return { bdf: fn.bdf, vendorId: fn.vendorId, deviceId: fn.deviceId };
}
