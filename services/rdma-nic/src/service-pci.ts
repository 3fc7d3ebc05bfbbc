import type { ServiceError } from '@grpc/grpc-js';
import { channelCredentials, type TlsConfig } from '@p2p/auth';
import { errno } from '@p2p/errno';
import { pci } from '@p2p/proto';
import { errnoOf } from '@p2p/status';
import type { NicFunction } from './context/device-attr';

/**
 * The PCI function the NIC drives, as pci-emu's topology has it: ENODEV
 * unless it exists, is present and is a NIC (a driver binds only to a
 * device it knows, as mlx5_core's PCI id table). A pci-emu that cannot be
 * reached rejects with the gRPC error itself, for the caller to retry.
 */
export function findNicFunction(address: string, bdf: string, tls: TlsConfig): Promise<NicFunction> {
  const client = new pci.PciEmuServiceClient(address, channelCredentials(tls));
  return new Promise<NicFunction>((resolve, reject) => {
    client.getFunction({ bdf }, (error: ServiceError | null, response: pci.GetFunctionResponse) => {
      client.close();
      const fn = response?.function;
      if (error !== null) {
        reject(errnoOf(error) === undefined ? error : errno('ENODEV', `no NIC function ${bdf} in pci-emu: ${error.details}`));
      } else if (fn === undefined || !fn.present || fn.kind !== pci.FunctionKind.FUNCTION_KIND_NIC) {
        reject(errno('ENODEV', `${bdf} is not a NIC function present in pci-emu's topology${fn === undefined ? '' : ` (it is a ${pci.functionKindToJSON(fn.kind)}${fn.present ? '' : ', unplugged'})`}`));
      } else {
        resolve({ bdf: fn.bdf, vendorId: fn.vendorId, deviceId: fn.deviceId });
      }
    });
  });
}
