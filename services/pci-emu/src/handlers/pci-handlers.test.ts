import { credentials, status as Code, type ServiceError } from '@grpc/grpc-js';
import { expect } from 'chai';
import { bearerInterceptor, newToken } from '@p2p/auth';
import { pci } from '@p2p/proto';
import { loadServerConfig, MessageLimit, type RunningServer } from '@p2p/server';
import { PciBus } from '../bus/pci-bus';
import type { BarMemoryFactory } from '../devices/bar-memory';
import { HeapBarMemory } from '../devices/heap-bar-memory';
import { startPciEmuServer } from '../server';
import { defaultTopology } from '../topology/default-topology';

const ACCEL0 = '0000:07:00.0';
const MAX_MESSAGE_BYTES = 64 * 1024;
const GiB = 2n ** 30n;

describe('pci-emu handlers: BulkRead under the message limit', () => {
  const limit = new MessageLimit(MAX_MESSAGE_BYTES);
  let reads: string[];
  let server: RunningServer;
  let client: pci.PciEmuServiceClient;
  let bar: number;

  /** Heap BAR memory that notes every read reaching it. */
  const countingMemory: BarMemoryFactory = (name, size) => {
    const memory = new HeapBarMemory(size);
    return {
      size,
      read: (offset, length) => {
        reads.push(`${name} ${offset}+${length}`);
        return memory.read(offset, length);
      },
      write: (offset, data) => memory.write(offset, data),
      readInto: (offset, target) => memory.readInto(offset, target),
      views: (offset, length) => memory.views(offset, length),
      close: () => memory.close(),
    };
  };

  beforeEach(async () => {
    reads = [];
    const bus = new PciBus(defaultTopology(), countingMemory);
    bar = bus.getFunction(ACCEL0).bars.find((b) => b.kind === 'memory')!.index;
    const config = loadServerConfig('TEST', { port: 0, metricsPort: -1 }, { TEST_HOST: '127.0.0.1', LOG_LEVEL: 'silent', TEST_MAX_MESSAGE_BYTES: String(MAX_MESSAGE_BYTES) });
    const secrets = { adminToken: newToken(), platformToken: newToken() };
    server = await startPciEmuServer(config, bus, { directory: '/nowhere', extents: () => [], relocate: () => 0 }, secrets);
    server.onShutdown(() => bus.close());
    client = new pci.PciEmuServiceClient(`127.0.0.1:${server.port}`, credentials.createInsecure(), { interceptors: [bearerInterceptor(secrets.platformToken)] });
  });

  afterEach(async () => {
    client.close();
    await server.shutdown('test done');
  });

  const bulkRead = (length: bigint): Promise<pci.BulkReadResponse> =>
    new Promise((resolve, reject) => client.bulkRead({ bdf: ACCEL0, bar, offset: 0n, length }, (error, response) => (error ? reject(error) : resolve(response))));
  const refusal = async (length: bigint): Promise<ServiceError> => {
    try {
      await bulkRead(length);
    } catch (error) {
      return error as ServiceError;
    }
    return expect.fail(`a BulkRead of ${length} bytes succeeded`);
  };

  it('refuses a BulkRead one byte over the limit with EMSGSIZE before the BAR is read', async () => {
    const error = await refusal(BigInt(limit.payloadBytes) + 1n);
    expect(error.code).to.equal(Code.RESOURCE_EXHAUSTED);
    expect(error.details).to.match(/^EMSGSIZE: /);
    expect(reads).to.deep.equal([]);
  });

  it('names the limit and the mapped path in the refusal', async () => {
    const error = await refusal(BigInt(limit.payloadBytes) + 1n);
    expect(error.details).to.include(`message limit is ${MAX_MESSAGE_BYTES} bytes`);
    expect(error.details).to.include('GetBarSegments');
  });

  it("refuses the testers' 1 GiB BulkRead with EMSGSIZE without reading it", async () => {
    const error = await refusal(GiB);
    expect(error.details).to.match(/^EMSGSIZE: BulkRead of 1073741824 bytes/);
    expect(reads).to.deep.equal([]);
  });

  it('answers a BulkRead of exactly the limit with the bytes written', async () => {
    const data = Buffer.alloc(limit.payloadBytes, 0x5a);
    await new Promise<void>((resolve, reject) => client.bulkWrite({ bdf: ACCEL0, bar, offset: 0n, data }, (error) => (error ? reject(error) : resolve())));
    const answer = await bulkRead(BigInt(limit.payloadBytes));
    expect(answer.decoded).to.equal(true);
    expect(answer.data.equals(data)).to.equal(true);
  });
});
