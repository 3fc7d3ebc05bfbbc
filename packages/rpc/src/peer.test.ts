import { type sendUnaryData, Server, ServerCredentials, type ServerUnaryCall, status as Code } from '@grpc/grpc-js';
import { expect } from 'chai';
import { bearerOf } from '@p2p/auth';
import { errno, ErrnoError } from '@p2p/errno';
import { pci } from '@p2p/proto';
import { errnoOf, toServiceError } from '@p2p/status';
import { peerUnreachable } from './middleware';
import { connectPeer } from './peer';

type Handler = (call: ServerUnaryCall<unknown, unknown>, callback: sendUnaryData<unknown>) => void;

/** A pci-emu stand-in whose methods are the given handlers; the rest answer UNIMPLEMENTED. */
async function peerServing(handlers: Record<string, Handler>): Promise<{ address: string; stop: () => void }> {
  const server = new Server();
  server.addService(pci.PciEmuServiceService, handlers as unknown as pci.PciEmuServiceServer);
  const port = await new Promise<number>((resolve, reject) =>
    server.bindAsync('127.0.0.1:0', ServerCredentials.createInsecure(), (error, bound) => (error ? reject(error) : resolve(bound))),
  );
  return { address: `127.0.0.1:${port}`, stop: () => server.forceShutdown() };
}

async function failure(call: Promise<unknown>): Promise<ErrnoError> {
  const error = await call.then(
    () => undefined,
    (e: unknown) => e,
  );
  expect(error).to.be.instanceOf(ErrnoError);
  return error as ErrnoError;
}

describe('connectPeer: the client layer between services', () => {
  const stops: Array<() => void> = [];
  afterEach(() => stops.splice(0).forEach((stop) => stop()));

  async function connect(handlers: Record<string, Handler>, options: { token?: string; deadlineMs?: number } = {}) {
    const served = await peerServing(handlers);
    const peer = connectPeer(pci.PciEmuServiceDefinition, served.address, { name: 'pci-emu', ...options });
    stops.push(() => peer.close(), served.stop);
    return peer.client;
  }

  it("keeps the peer's errno and names the peer and the method", async () => {
    const client = await connect({ configRead: (_call, callback) => callback(toServiceError(errno('ENODEV', 'no function 0000:09:00.0'))) });
    const error = await failure(client.configRead({ bdf: '0000:09:00.0', offset: 0, width: 4 }));
    expect(error.errno).to.equal('ENODEV');
    expect(errnoOf(error)).to.equal('ENODEV');
    expect(error.detail).to.equal('pci-emu ConfigRead: ENODEV: no function 0000:09:00.0');
    expect(peerUnreachable(error)).to.equal(false);
  });

  it('carries the credential on every call, and none without one', async () => {
    const seen: Array<string | undefined> = [];
    const handlers = { listFunctions: ((call, callback) => (seen.push(bearerOf(call.metadata)), callback(null, { functions: [] }))) as Handler };
    await (await connect(handlers, { token: 'platform-secret' })).listFunctions({});
    await (await connect(handlers)).listFunctions({});
    expect(seen).to.deep.equal(['platform-secret', undefined]);
  });

  it('fails a call the peer does not answer in time with ETIMEDOUT', async () => {
    const client = await connect({ listFunctions: () => undefined }, { deadlineMs: 100 });
    const started = Date.now();
    const error = await failure(client.listFunctions({}));
    expect(error.errno).to.equal('ETIMEDOUT');
    expect(Date.now() - started).to.be.within(90, 2000);
  });

  it('is EIO, naming the call, when the peer cannot be reached', async () => {
    const served = await peerServing({});
    served.stop();
    const peer = connectPeer(pci.PciEmuServiceDefinition, served.address, { name: 'pci-emu', deadlineMs: 2000 });
    stops.push(() => peer.close());
    const error = await failure(peer.client.getFunction({ bdf: '0000:07:00.0' }));
    expect(error.errno).to.be.oneOf(['EIO', 'ETIMEDOUT']);
    expect(error.detail).to.match(/^pci-emu GetFunction: /);
    expect(peerUnreachable(error)).to.equal(true);
  });

  it('retries a method without side effects once the peer was unreachable, and never one with them', async () => {
    const unavailable = { code: Code.UNAVAILABLE, details: 'connection reset' };
    let reads = 0;
    let writes = 0;
    const client = await connect({
      getFunction: (_call, callback) => (++reads === 1 ? callback(unavailable) : callback(null, { function: undefined })),
      configWrite: (_call, callback) => (++writes, callback(unavailable)),
    });
    await client.getFunction({ bdf: '0000:07:00.0' });
    expect(reads).to.equal(2);
    const error = await failure(client.configWrite({ bdf: '0000:07:00.0', offset: 4, width: 2, value: 0, hardware: true }));
    expect(error.errno).to.equal('EIO');
    expect(writes).to.equal(1);
  });

  it('does not retry an errno the peer answered with, unless it says UNAVAILABLE (EAGAIN)', async () => {
    let reads = 0;
    const client = await connect({ getFunction: (_call, callback) => (++reads, callback(toServiceError(errno('EBUSY', 'owned')))) });
    expect((await failure(client.getFunction({ bdf: '0000:07:00.0' }))).errno).to.equal('EBUSY');
    expect(reads).to.equal(1);
  });
});
