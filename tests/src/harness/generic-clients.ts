import * as path from 'node:path';
import { type Client, credentials, loadPackageDefinition, type ServiceClientConstructor } from '@grpc/grpc-js';
import * as protoLoader from '@grpc/proto-loader';
import { protoPath as healthProtoPath } from 'grpc-health-check';
import { rpc } from './rpc';

type Unary = (request: object, callback: (error: Error | null, response: unknown) => void) => void;

function clientFor(protoFile: string, serviceName: string, address: string): Client & Record<string, Unary> {
  const definition = protoLoader.loadSync(protoFile, { keepCase: false, longs: String, enums: String, defaults: true });
  let node: unknown = loadPackageDefinition(definition);
  for (const part of serviceName.split('.')) node = (node as Record<string, unknown>)[part];
  const Ctor = node as ServiceClientConstructor;
  return new Ctor(address, credentials.createInsecure()) as unknown as Client & Record<string, Unary>;
}

/** grpc.health.v1.Health/Check: the serving status string of `service` ('' = the server). */
export async function healthCheck(address: string, service = ''): Promise<string> {
  const client = clientFor(healthProtoPath, 'grpc.health.v1.Health', address);
  try {
    const response = await rpc<{ status: string }>((cb) => client.check!({ service }, cb as never));
    return response.status;
  } finally {
    client.close();
  }
}

/** The services server reflection (v1) lists, as grpcurl's `list` shows them. */
export async function reflectedServices(address: string): Promise<string[]> {
  const protoFile = path.join(path.dirname(require.resolve('@grpc/reflection/package.json')), 'build', 'proto', 'grpc', 'reflection', 'v1', 'reflection.proto');
  const client = clientFor(protoFile, 'grpc.reflection.v1.ServerReflection', address) as unknown as Client & {
    serverReflectionInfo(): NodeJS.ReadWriteStream & { write(message: object): boolean; end(): void };
  };
  try {
    return await new Promise<string[]>((resolve, reject) => {
      const stream = client.serverReflectionInfo();
      stream.on('data', (message: { listServicesResponse?: { service: Array<{ name: string }> } }) => {
        resolve((message.listServicesResponse?.service ?? []).map((s) => s.name).sort());
        stream.end();
      });
      stream.on('error', reject);
      stream.write({ listServices: '*' });
    });
  } finally {
    client.close();
  }
}
