import type { ServiceError } from '@grpc/grpc-js';
import { ErrnoError } from '@p2p/errno';
import { errnoOf } from '@p2p/status';

/**
 * A unary call to another service as a promise. A failure keeps the peer's
 * errno (an EINVAL from pci-emu stays EINVAL); a peer that is unreachable or
 * answers without one is EIO, naming the call.
 */
export function call<Res>(what: string, start: (callback: (error: ServiceError | null, response: Res) => void) => unknown): Promise<Res> {
  return new Promise((resolve, reject) => {
    start((error, response) => {
      if (!error) resolve(response);
      else reject(new ErrnoError(errnoOf(error) ?? 'EIO', `${what}: ${error.details || error.message}`));
    });
  });
}
