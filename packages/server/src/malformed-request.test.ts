import { Client, credentials, Metadata, type ServiceError, status as Code, type StatusObject } from '@grpc/grpc-js';
import { expect } from 'chai';
import { pci } from '@p2p/proto';
import { errnoOf } from '@p2p/status';
import { loadServerConfig } from './config';
import { type RunningServer, startServer } from './grpc-server';
import { serverStream, unary } from './handlers';

/** GetFunctionRequest { bdf: "0000:03:00.0" } cut after 3 of its 14 bytes. */
const TRUNCATED = Buffer.from(pci.GetFunctionRequest.encode({ bdf: '0000:03:00.0' }).finish()).subarray(0, 3);
/** Field 1 with wire type 7, which no field can have. */
const BAD_WIRE_TYPE = Buffer.from([0x0f, 0x00]);

describe('malformed requests: bytes that are no message of the request type', () => {
  let server: RunningServer;
  let client: Client;
  const handled: string[] = [];

  before(async () => {
    const config = loadServerConfig('TEST', { port: 0, metricsPort: -1 }, { TEST_HOST: '127.0.0.1', LOG_LEVEL: 'silent' });
    const implementation = {
      getFunction: unary((req: pci.GetFunctionRequest) => {
        handled.push(`GetFunction ${req.bdf}`);
        return { function: undefined };
      }),
      watchEvents: serverStream(() => {
        handled.push('WatchEvents');
        return () => undefined;
      }),
    } as unknown as pci.PciEmuServiceServer;
    server = await startServer({ name: 'test', config, services: [{ name: 'p2p.pci.v1.PciEmuService', definition: pci.PciEmuServiceService, implementation }], protoFiles: [] });
    client = new Client(`127.0.0.1:${server.port}`, credentials.createInsecure());
  });

  beforeEach(() => {
    handled.length = 0;
  });

  after(async () => {
    client.close();
    await server.shutdown('test done');
  });

  const unaryBytes = (bytes: Buffer): Promise<ServiceError | null> =>
    new Promise((resolve) =>
      client.makeUnaryRequest('/p2p.pci.v1.PciEmuService/GetFunction', (b: Buffer) => b, (b: Buffer) => b, bytes, new Metadata(), {}, (error) => resolve(error)),
    );

  it('answers a truncated unary request with EINVAL (INVALID_ARGUMENT), not INTERNAL, and never runs the handler', async () => {
    const error = await unaryBytes(TRUNCATED);
    expect(error?.code).to.equal(Code.INVALID_ARGUMENT);
    expect(errnoOf(error)).to.equal('EINVAL');
    expect(error?.details).to.match(/^EINVAL: the request is not a \/p2p\.pci\.v1\.PciEmuService\/GetFunction message/);
    expect(handled).to.deep.equal([]);
  });

  it('answers a request with a wire type no field can have with EINVAL', async () => {
    const error = await unaryBytes(BAD_WIRE_TYPE);
    expect(errnoOf(error)).to.equal('EINVAL');
    expect(handled).to.deep.equal([]);
  });

  it('ends a server stream whose request does not decode with EINVAL', async () => {
    const status = await new Promise<StatusObject>((resolve) => {
      const stream = client.makeServerStreamRequest('/p2p.pci.v1.PciEmuService/WatchEvents', (b: Buffer) => b, (b: Buffer) => b, TRUNCATED, new Metadata(), {});
      stream.on('error', () => undefined);
      stream.on('status', resolve);
    });
    expect(status.code).to.equal(Code.INVALID_ARGUMENT);
    expect(errnoOf(status)).to.equal('EINVAL');
    expect(handled).to.deep.equal([]);
  });

  it('still hands a well-formed request to the handler', async () => {
    const error = await unaryBytes(Buffer.from(pci.GetFunctionRequest.encode({ bdf: '0000:03:00.0' }).finish()));
    expect(error).to.equal(null);
    expect(handled).to.deep.equal(['GetFunction 0000:03:00.0']);
  });
});
