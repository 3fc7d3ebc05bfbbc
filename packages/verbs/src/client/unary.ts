import type { ServiceError } from '@grpc/grpc-js';

/** A callback-style unary call as a promise; a failed call rejects with the gRPC error (errnoOf() reads its errno). */
export function unary<Res>(start: (callback: (error: ServiceError | null, response: Res) => void) => unknown): Promise<Res> {
  return new Promise((resolve, reject) => {
    start((error, response) => (error ? reject(error) : resolve(response)));
  });
}
