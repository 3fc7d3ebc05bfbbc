import { credentials, status as Code, type ServiceError } from '@grpc/grpc-js';
import { expect } from 'chai';
import { Authenticator, bearerInterceptor, newToken } from '@p2p/auth';
import { vfio as wire } from '@p2p/proto';
import { loadServerConfig, MessageLimit, type RunningServer } from '@p2p/server';
import { errnoOf } from '@p2p/status';
import { startVfioPciServer } from '../server';
import { harness, type Harness, NVME, PID } from '../testing/harness';

const MAX_MESSAGE_BYTES = 64 * 1024;
/** NVMe BAR2 of the harness: 4 MiB of memory. */
const BAR2 = 2;

describe('vfio-pci handlers: RegionRead under the message limit', () => {
  const limit = new MessageLimit(MAX_MESSAGE_BYTES);
  let h: Harness;
  let deviceFd: number;
  let bulkReads: string[];
  let server: RunningServer;
  let client: wire.VfioPciServiceClient;

  beforeEach(async () => {
    h = harness();
    deviceFd = await h.open();
    bulkReads = [];
    const bulkRead = h.pci.bulkRead.bind(h.pci);
    h.pci.bulkRead = (bdf, bar, offset, length) => {
      bulkReads.push(`${bdf} bar${bar} 0x${offset.toString(16)}+${length}`);
      return bulkRead(bdf, bar, offset, length);
    };
    const config = loadServerConfig('TEST', { port: 0, metricsPort: -1 }, { TEST_HOST: '127.0.0.1', LOG_LEVEL: 'silent', TEST_MAX_MESSAGE_BYTES: String(MAX_MESSAGE_BYTES) });
    // The caller proves it is PID with a credential only this test knows.
    const credential = newToken();
    const auth = new Authenticator({ adminToken: newToken(), platformToken: newToken() }, { resolve: (token) => (token === credential ? PID : undefined) });
    server = await startVfioPciServer(config, h.vfio, auth);
    client = new wire.VfioPciServiceClient(`127.0.0.1:${server.port}`, credentials.createInsecure(), { interceptors: [bearerInterceptor(credential)] });
  });

  afterEach(async () => {
    client.close();
    await server.shutdown('test done');
  });

  const regionRead = (count: number): Promise<wire.RegionReadResponse> =>
    new Promise((resolve, reject) =>
      client.regionRead({ pid: PID, deviceFd, index: BAR2, offset: 0n, count }, (error, response) => (error ? reject(error) : resolve(response))),
    );
  const refusal = async (count: number): Promise<ServiceError> => {
    try {
      await regionRead(count);
    } catch (error) {
      return error as ServiceError;
    }
    return expect.fail(`a RegionRead of ${count} bytes succeeded`);
  };

  it('refuses a RegionRead one byte over the limit with EMSGSIZE before the device is read', async () => {
    const error = await refusal(limit.payloadBytes + 1);
    expect(error.code).to.equal(Code.RESOURCE_EXHAUSTED);
    expect(errnoOf(error)).to.equal('EMSGSIZE');
    expect(bulkReads).to.deep.equal([]);
  });

  it('names the limit and the dma-buf mapping in the RegionRead refusal', async () => {
    const error = await refusal(limit.payloadBytes + 1);
    expect(error.details).to.include(`message limit is ${MAX_MESSAGE_BYTES} bytes`);
    expect(error.details).to.include('MmapFd');
  });

  it('answers a RegionRead of exactly the limit with the bytes written', async () => {
    const data = Buffer.alloc(limit.payloadBytes, 0x3c);
    const written = await new Promise<wire.RegionWriteResponse>((resolve, reject) =>
      client.regionWrite({ pid: PID, deviceFd, index: BAR2, offset: 0n, data }, (error, response) => (error ? reject(error) : resolve(response))),
    );
    expect(written.written).to.equal(data.length);
    expect((await regionRead(limit.payloadBytes)).data.equals(data)).to.equal(true);
  });
});

describe("vfio-pci handlers: binding is the administrator's", () => {
  const secrets = { adminToken: newToken(), platformToken: newToken() };
  let h: Harness;
  let server: RunningServer;
  let address: string;
  const clients: wire.VfioPciServiceClient[] = [];

  beforeEach(async () => {
    h = harness();
    const config = loadServerConfig('TEST', { port: 0, metricsPort: -1 }, { TEST_HOST: '127.0.0.1', LOG_LEVEL: 'silent' });
    server = await startVfioPciServer(config, h.vfio, new Authenticator(secrets));
    address = `127.0.0.1:${server.port}`;
  });

  afterEach(async () => {
    for (const client of clients.splice(0)) client.close();
    await server.shutdown('test done');
  });

  const as = (token: string): wire.VfioPciServiceClient => {
    const client = new wire.VfioPciServiceClient(address, credentials.createInsecure(), { interceptors: [bearerInterceptor(token)] });
    clients.push(client);
    return client;
  };
  const call = (start: (cb: (error: ServiceError | null) => void) => unknown): Promise<ServiceError | null> => new Promise((resolve) => start(resolve));
  const bound = (): string[] => h.vfio.devices().map((d) => d.bdf);

  it('refuses Bind with the platform token (EACCES), and the function stays unbound', async () => {
    const error = await call((cb) => as(secrets.platformToken).bind({ bdf: NVME, variants: undefined }, cb));
    expect(error?.code).to.equal(Code.PERMISSION_DENIED);
    expect(errnoOf(error)).to.equal('EACCES');
    expect(bound()).to.deep.equal([]);
  });

  it('refuses Unbind with the platform token (EACCES), and the function stays bound', async () => {
    await h.vfio.bind(NVME, {});
    const error = await call((cb) => as(secrets.platformToken).unbind({ bdf: NVME }, cb));
    expect(errnoOf(error)).to.equal('EACCES');
    expect(bound()).to.deep.equal([NVME]);
  });

  it('binds and unbinds with the administrator token', async () => {
    const admin = as(secrets.adminToken);
    expect(await call((cb) => admin.bind({ bdf: NVME, variants: undefined }, cb))).to.equal(null);
    expect(bound()).to.deep.equal([NVME]);
    expect(await call((cb) => admin.unbind({ bdf: NVME }, cb))).to.equal(null);
    expect(bound()).to.deep.equal([]);
  });
});
