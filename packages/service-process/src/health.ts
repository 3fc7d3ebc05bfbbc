import { Client } from '@grpc/grpc-js';
import { channelCredentials, PLAINTEXT, type TlsConfig } from '@p2p/auth';

const SERVING = Buffer.from([0x08, 0x01]);

/**
 * grpc.health.v1.Health/Check of the whole server: true when it answers
 * SERVING. The messages are tiny enough to encode by hand: the request is
 * empty, and SERVING is field 1 (varint) = 1, the bytes 08 01.
 */
export function isServing(address: string, deadlineMs = 1000, tls: TlsConfig = PLAINTEXT): Promise<boolean> {
  const client = new Client(address, channelCredentials(tls));
  return new Promise<boolean>((resolve) => {
    client.makeUnaryRequest<Buffer, Buffer>(
      '/grpc.health.v1.Health/Check',
      (request) => request,
      (response) => response,
      Buffer.alloc(0),
      { deadline: Date.now() + deadlineMs },
      (error, response) => resolve(!error && response !== undefined && response.equals(SERVING)),
    );
  }).finally(() => client.close());
}
