import { fork } from 'node:child_process';
import { type ChildProcess } from 'node:child_process';
import * as grpc from '@grpc/grpc-js';

/**
 * The gRPC baselines, served by another process: a client-streaming method of
 * raw bytes (no protobuf), as a service would carry bulk data if it had no
 * shared memory, and a bare unary call with an empty handler, what any
 * grpc-js unary RPC costs at least.
 */
const identity = (buffer: Buffer): Buffer => buffer;
const SINK: grpc.ServiceDefinition = {
  ping: {
    path: '/bench.Sink/Ping',
    requestStream: false,
    responseStream: false,
    requestSerialize: identity,
    requestDeserialize: identity,
    responseSerialize: identity,
    responseDeserialize: identity,
  },
  write: {
    path: '/bench.Sink/Write',
    requestStream: true,
    responseStream: false,
    requestSerialize: identity,
    requestDeserialize: identity,
    responseSerialize: identity,
    responseDeserialize: identity,
  },
};
const MAX_MESSAGE = 64 * 1024 * 1024;

/** A sink in a child process; resolves once it listens. */
export async function startSink(): Promise<{ address: string; stop: () => void }> {
  const child: ChildProcess = fork(__filename, ['serve'], { stdio: ['ignore', 'ignore', 'inherit', 'ipc'] });
  const port = await new Promise<number>((resolve, reject) => {
    child.once('message', (message) => resolve(Number(message)));
    child.once('exit', (code) => reject(new Error(`the gRPC sink exited (${code})`)));
  });
  return { address: `127.0.0.1:${port}`, stop: () => child.kill('SIGKILL') };
}

/** Bytes per second streaming `total` bytes in `message`-byte messages to the sink (the call ends when all arrived). */
export async function streamRate(address: string, message: number, total: number): Promise<number> {
  const Client = grpc.makeGenericClientConstructor(SINK, 'Sink');
  const client = new Client(address, grpc.credentials.createInsecure(), { 'grpc.max_send_message_length': MAX_MESSAGE });
  const chunk = Buffer.alloc(message, 0x5a);
  const run = (bytes: number): Promise<void> =>
    new Promise<void>((resolve, reject) => {
      const call = (client as unknown as { write: (cb: (e: Error | null) => void) => grpc.ClientWritableStream<Buffer> }).write((error) =>
        error ? reject(error) : resolve(),
      );
      let sent = 0;
      const pump = (): void => {
        while (sent < bytes) {
          sent += message;
          if (!call.write(chunk)) {
            call.once('drain', pump);
            return;
          }
        }
        call.end();
      };
      pump();
    });
  try {
    await run(Math.min(total, 16 * message));
    const start = process.hrtime.bigint();
    await run(total);
    return total / (Number(process.hrtime.bigint() - start) / 1e9);
  } finally {
    client.close();
  }
}

/** A bare grpc-js unary call to the sink: no interceptors, no protobuf, an empty handler. */
export function bareUnary(address: string): { call: () => Promise<void>; close: () => void } {
  const Client = grpc.makeGenericClientConstructor(SINK, 'Sink');
  const client = new Client(address, grpc.credentials.createInsecure());
  const ping = (client as unknown as { ping: (request: Buffer, cb: (e: Error | null) => void) => void }).ping.bind(client);
  const empty = Buffer.alloc(0);
  return {
    call: () => new Promise<void>((resolve, reject) => ping(empty, (error) => (error ? reject(error) : resolve()))),
    close: () => client.close(),
  };
}

function serve(): void {
  const server = new grpc.Server({ 'grpc.max_receive_message_length': MAX_MESSAGE });
  server.addService(SINK, {
    ping: (_call: grpc.ServerUnaryCall<Buffer, Buffer>, callback: grpc.sendUnaryData<Buffer>) => callback(null, Buffer.alloc(0)),
    write: (call: grpc.ServerReadableStream<Buffer, Buffer>, callback: grpc.sendUnaryData<Buffer>) => {
      call.on('data', () => undefined);
      call.on('end', () => callback(null, Buffer.alloc(0)));
    },
  });
  server.bindAsync('127.0.0.1:0', grpc.ServerCredentials.createInsecure(), (error, port) => {
    if (error) throw error;
    process.send?.(String(port));
  });
}

if (require.main === module && process.argv[2] === 'serve') serve();
