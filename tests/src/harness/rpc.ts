import type { ServiceError } from '@grpc/grpc-js';
import { expect } from 'chai';
import type { ErrnoName } from '@p2p/errno';
import { errnoOf } from '@p2p/status';

/** Turns a callback-style unary call into a promise: `await rpc((cb) => client.getFunction(req, cb))`. */
export function rpc<Res>(start: (callback: (error: ServiceError | null, response: Res) => void) => unknown): Promise<Res> {
  return new Promise((resolve, reject) => {
    start((error, response) => (error ? reject(error) : resolve(response)));
  });
}

/** Asserts that a call fails with `name` (read from the status details) and returns the error. */
export async function expectErrno(call: Promise<unknown>, name: ErrnoName): Promise<ServiceError> {
  try {
    await call;
  } catch (error) {
    expect(errnoOf(error), `errno of: ${(error as Error).message}`).to.equal(name);
    expect((error as Error).message).to.include(name);
    return error as ServiceError;
  }
  expect.fail(`expected the call to fail with ${name}, but it succeeded`);
}
