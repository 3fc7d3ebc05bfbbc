import type { ServiceError } from '@grpc/grpc-js';
import { ErrnoError } from '@p2p/errno';
import { errnoOf } from '@p2p/status';

/**
 * A failed call to a peer service (the registry, pci-emu) as an
 * ErrnoError: the peer's errno kept (EBADF for a bad fd, EOPNOTSUPP for an
 * exporter refusing the attach), EIO for a peer that answered without one
 * (unreachable), naming the call.
 */
export function peerError(error: unknown, what: string): ErrnoError {
  if (error instanceof ErrnoError) return error;
  const detail = error instanceof Error ? ((error as Partial<ServiceError>).details ?? error.message) : String(error);
  return new ErrnoError(errnoOf(error) ?? 'EIO', `${what}: ${detail}`);
}
