import { type ClientReadableStream, credentials, status as Code, type ServiceError } from '@grpc/grpc-js';
import { expect } from 'chai';
import { bearerInterceptor, newToken } from '@p2p/auth';
import { dmabuf } from '@p2p/proto';
import { loadServerConfig, MessageLimit, type RunningServer } from '@p2p/server';
import { errnoOf } from '@p2p/status';
import type { OwnerExtent } from '../owners/file-owner';
import type { SegmentAccess } from '../segments/segment-access';
import { startDmabufRegistryServer } from '../server';
import { harness, type Harness, NIC } from '../testing/harness';
import { MemorySegments } from '../testing/memory-segments';

const MAX_MESSAGE_BYTES = 64 * 1024;
const MiB = 1024 * 1024;
/** Hundreds of chunks at this limit: long enough to act on a stream while it runs. */
const LARGE = 16 * MiB;

/** MemorySegments that counts the bytes the registry reads through it. */
class CountingSegments implements SegmentAccess {
  readonly memory = new MemorySegments();
  bytesRead = 0;

  read(directory: string, extents: readonly OwnerExtent[], offset: number, length: number): Buffer {
    this.bytesRead += length;
    return this.memory.read(directory, extents, offset, length);
  }

  write(directory: string, extents: readonly OwnerExtent[], offset: number, data: Uint8Array): void {
    this.memory.write(directory, extents, offset, data);
  }
}

describe('registry handlers: bulk transfers under the message limit', () => {
  const limit = new MessageLimit(MAX_MESSAGE_BYTES);
  let segments: CountingSegments;
  let h: Harness;
  let server: RunningServer;
  let client: dmabuf.DmaBufRegistryServiceClient;
  let pid: number;

  beforeEach(async () => {
    segments = new CountingSegments();
    h = harness({ segments });
    pid = h.process('spdk').pid;
    const config = loadServerConfig('TEST', { port: 0, metricsPort: -1 }, { TEST_HOST: '127.0.0.1', LOG_LEVEL: 'silent', TEST_MAX_MESSAGE_BYTES: String(MAX_MESSAGE_BYTES) });
    const secrets = { adminToken: newToken(), platformToken: newToken() };
    server = await startDmabufRegistryServer(config, h.registry, { directory: '/fake', incarnation: 'test', callTimeoutMs: 1000 }, secrets);
    client = new dmabuf.DmaBufRegistryServiceClient(`127.0.0.1:${server.port}`, credentials.createInsecure(), {
      interceptors: [bearerInterceptor(secrets.adminToken)],
    });
  });

  afterEach(async () => {
    client.close();
    await server.shutdown('test done');
  });

  const unary = <Res>(start: (callback: (error: ServiceError | null, response: Res) => void) => unknown): Promise<Res> =>
    new Promise((resolve, reject) => start((error, response) => (error ? reject(error) : resolve(response))));
  const failure = async (call: Promise<unknown>): Promise<ServiceError> => {
    try {
      await call;
    } catch (error) {
      return error as ServiceError;
    }
    return expect.fail('the call succeeded');
  };
  const cpuBuffer = (size: number): number => h.owner.export(h.registry, pid, { size, cpuAccess: true }).fd;
  const cpuRead = (fd: number, length: number): Promise<dmabuf.CpuReadResponse> =>
    unary((cb) => client.cpuRead({ pid, fd, offset: 0n, length: BigInt(length) }, cb));
  /** A mapped attachment of a `size`-byte buffer whose byte i is i mod 251. */
  const mappedAttachment = async (size: number): Promise<bigint> => {
    const { fd } = h.owner.export(h.registry, pid, { size });
    const { attachmentId } = await h.registry.attach({ pid, fd, importerBdf: NIC, dynamic: true, peer2peer: true });
    await h.registry.map(pid, attachmentId);
    h.registry.writeAttachment(pid, attachmentId, 0, pattern(size));
    segments.bytesRead = 0;
    return BigInt(attachmentId);
  };
  const readAttachment = (attachmentId: bigint, length: number): ClientReadableStream<dmabuf.ReadAttachmentResponse> =>
    client.readAttachment({ pid, attachmentId, offset: 0n, length: BigInt(length) });
  /** The stream's data until it ends, or its error. */
  const collect = (stream: ClientReadableStream<dmabuf.ReadAttachmentResponse>): Promise<Buffer[]> =>
    new Promise((resolve, reject) => {
      const chunks: Buffer[] = [];
      stream.on('data', (message: dmabuf.ReadAttachmentResponse) => chunks.push(message.data));
      stream.on('end', () => resolve(chunks));
      stream.on('error', reject);
    });
  const bufInfo = (): Promise<dmabuf.GetBufInfoResponse> => unary((cb) => client.getBufInfo({}, cb));

  it('refuses a CpuRead one byte over the limit with EMSGSIZE before the exporter or the memory is asked', async () => {
    const fd = cpuBuffer(2 * limit.payloadBytes);
    const error = await failure(cpuRead(fd, limit.payloadBytes + 1));
    expect(error.code).to.equal(Code.RESOURCE_EXHAUSTED);
    expect(errnoOf(error)).to.equal('EMSGSIZE');
    expect(h.owner.calls.filter((call) => call.startsWith('cpuExtents'))).to.deep.equal([]);
    expect(segments.bytesRead).to.equal(0);
  });

  it('names the limit and MmapFd in the CpuRead refusal', async () => {
    const error = await failure(cpuRead(cpuBuffer(2 * limit.payloadBytes), limit.payloadBytes + 1));
    expect(error.details).to.include(`message limit is ${MAX_MESSAGE_BYTES} bytes`);
    expect(error.details).to.include('MmapFd');
  });

  it('answers a CpuRead of exactly the limit with the bytes written', async () => {
    const fd = cpuBuffer(limit.payloadBytes);
    const data = pattern(limit.payloadBytes);
    await unary((cb) => client.cpuWrite({ pid, fd, offset: 0n, data }, cb));
    expect((await cpuRead(fd, limit.payloadBytes)).data.equals(data)).to.equal(true);
  });

  it('checks the whole ReadAttachment range before the first byte: EINVAL past the end, nothing sent', async () => {
    const attachmentId = await mappedAttachment(4 * limit.payloadBytes);
    const stream = readAttachment(attachmentId, 4 * limit.payloadBytes + 1);
    let messages = 0;
    stream.on('data', () => messages++);
    const error = await failure(collect(stream));
    expect(errnoOf(error)).to.equal('EINVAL');
    expect(messages).to.equal(0);
    expect(segments.bytesRead).to.equal(0);
  });

  it('streams a large ReadAttachment whole, in chunks that fit the limit', async () => {
    const attachmentId = await mappedAttachment(LARGE);
    const chunks = await collect(readAttachment(attachmentId, LARGE));
    expect(Math.max(...chunks.map((chunk) => chunk.length))).to.equal(limit.payloadBytes);
    expect(Buffer.concat(chunks).equals(pattern(LARGE))).to.equal(true);
  });

  it('answers another call while a large ReadAttachment runs', async () => {
    const attachmentId = await mappedAttachment(LARGE);
    const stream = readAttachment(attachmentId, LARGE);
    const done = collect(stream);
    await new Promise((resolve) => stream.once('data', resolve));
    await bufInfo();
    const readWhenAnswered = segments.bytesRead;
    expect(Buffer.concat(await done).length).to.equal(LARGE);
    expect(readWhenAnswered, 'bytes read when GetBufInfo answered').to.be.below(LARGE);
  });

  it('holds a ReadAttachment while the client reads nothing, and finishes it once the client reads again', async () => {
    const attachmentId = await mappedAttachment(LARGE);
    const stream = readAttachment(attachmentId, LARGE);
    const chunks: Buffer[] = [];
    stream.on('data', (message: dmabuf.ReadAttachmentResponse) => chunks.push(message.data));
    await new Promise((resolve) => stream.once('data', resolve));
    stream.pause();
    const held = await settledBytesRead(segments, bufInfo);
    expect(held, 'bytes read while the client read nothing').to.be.below(LARGE / 2);
    const ended = new Promise((resolve) => stream.once('end', resolve));
    stream.resume();
    await ended;
    expect(Buffer.concat(chunks).equals(pattern(LARGE))).to.equal(true);
  });

  it('stops reading when the client cancels a ReadAttachment mid-way', async () => {
    const attachmentId = await mappedAttachment(LARGE);
    const stream = readAttachment(attachmentId, LARGE);
    const cancelled = new Promise<ServiceError>((resolve) => stream.once('error', resolve));
    await new Promise((resolve) => stream.once('data', resolve));
    stream.cancel();
    expect((await cancelled).code).to.equal(Code.CANCELLED);
    const stopped = await settledBytesRead(segments, bufInfo);
    expect(stopped, 'bytes read after the cancel').to.be.below(LARGE / 2);
    await bufInfo();
    expect(segments.bytesRead).to.equal(stopped);
  });

  it('writes every byte of a WriteAttachment sent in many messages', async () => {
    const attachmentId = await mappedAttachment(16 * limit.payloadBytes);
    const data = Buffer.alloc(16 * limit.payloadBytes, 0xa5);
    const written = new Promise<dmabuf.WriteAttachmentResponse>((resolve, reject) => {
      const call = client.writeAttachment((error, response) => (error ? reject(error) : resolve(response)));
      for (let at = 0; at < data.length; at += limit.payloadBytes) {
        call.write({ pid, attachmentId, offset: 0n, data: data.subarray(at, at + limit.payloadBytes) });
      }
      call.end();
    });
    expect((await written).written).to.equal(BigInt(data.length));
    expect(h.registry.readAttachment(pid, Number(attachmentId), 0, data.length).equals(data)).to.equal(true);
  });
});

describe('registry handlers: a refused ReadAttachment', () => {
  let server: RunningServer;
  let address: string;
  let secrets: { adminToken: string; platformToken: string };

  before(async () => {
    const config = loadServerConfig('TEST', { port: 0, metricsPort: -1 }, { TEST_HOST: '127.0.0.1', LOG_LEVEL: 'silent' });
    secrets = { adminToken: newToken(), platformToken: newToken() };
    server = await startDmabufRegistryServer(config, harness().registry, { directory: '/fake', incarnation: 'test', callTimeoutMs: 1000 }, secrets);
    address = `127.0.0.1:${server.port}`;
  });

  after(async () => {
    await server.shutdown('test done');
  });

  /** How a ReadAttachment of attachment 1 as `token` (none: anonymous), acting in `pid`, ends. */
  const refusal = (token: string | undefined, pid: number): Promise<ServiceError> => {
    const client = new dmabuf.DmaBufRegistryServiceClient(address, credentials.createInsecure(), { interceptors: token === undefined ? [] : [bearerInterceptor(token)] });
    const stream = client.readAttachment({ pid, attachmentId: 1n, offset: 0n, length: 8n });
    stream.on('data', () => undefined);
    return new Promise<ServiceError>((resolve) => stream.once('error', resolve)).finally(() => client.close());
  };

  it('ends with EPERM (PERMISSION_DENIED) for an anonymous caller, not UNKNOWN', async () => {
    const error = await refusal(undefined, 1);
    expect(error.code).to.equal(Code.PERMISSION_DENIED);
    expect(errnoOf(error)).to.equal('EPERM');
    expect(error.details).to.include('ReadAttachment');
  });

  it('ends with EINVAL for the administrator naming pid 0, not UNKNOWN', async () => {
    const error = await refusal(secrets.adminToken, 0);
    expect(error.code).to.equal(Code.INVALID_ARGUMENT);
    expect(errnoOf(error)).to.equal('EINVAL');
  });
});

describe('registry handlers: address spaces and user page pins', () => {
  let h: Harness;
  let server: RunningServer;
  let secrets: { adminToken: string; platformToken: string };
  const clients: dmabuf.DmaBufRegistryServiceClient[] = [];

  beforeEach(async () => {
    h = harness();
    const config = loadServerConfig('TEST', { port: 0, metricsPort: -1 }, { TEST_HOST: '127.0.0.1', LOG_LEVEL: 'silent' });
    secrets = { adminToken: newToken(), platformToken: newToken() };
    server = await startDmabufRegistryServer(config, h.registry, { directory: '/fake', incarnation: 'test', callTimeoutMs: 1000 }, secrets);
  });

  afterEach(async () => {
    for (const client of clients.splice(0)) client.close();
    await server.shutdown('test done');
  });

  const as = (token: string): dmabuf.DmaBufRegistryServiceClient => {
    const client = new dmabuf.DmaBufRegistryServiceClient(`127.0.0.1:${server.port}`, credentials.createInsecure(), { interceptors: [bearerInterceptor(token)] });
    clients.push(client);
    return client;
  };
  const unary = <Res>(start: (callback: (error: ServiceError | null, response: Res) => void) => unknown): Promise<Res> =>
    new Promise((resolve, reject) => start((error, response) => (error ? reject(error) : resolve(response))));
  const errnoOfCall = async (call: Promise<unknown>): Promise<string | undefined> => {
    try {
      await call;
    } catch (error) {
      return errnoOf(error);
    }
    return expect.fail('the call succeeded');
  };
  /** A process with a host-memory buffer of one page mapped, as its own client. */
  const mapped = async () => {
    const { pid, credential } = h.registry.openSession('qemu');
    const { fd } = h.owner.export(h.registry, pid, { cpuAccess: true, providerBdf: '', size: 4096 });
    const client = as(credential);
    const { addr, prot } = await unary<dmabuf.MmapFdResponse>((cb) => client.mmapFd({ pid, fd, offset: 0n, length: 4096n }, cb));
    return { pid, client, addr, prot };
  };

  it('answers MmapFd with the address and the protection, PROT_READ | PROT_WRITE for an O_RDWR fd without prot', async () => {
    const { addr, prot } = await mapped();
    expect(addr > 0n && addr % 4096n === 0n).to.equal(true);
    expect(prot).to.equal(3);
  });

  it('refuses PinUserPages and UnpinUserPages to a process with EACCES', async () => {
    const { pid, client, addr } = await mapped();
    expect(await errnoOfCall(unary((cb) => client.pinUserPages({ pid, addr, length: 4096n, write: false, pinnerPid: pid }, cb)))).to.equal('EACCES');
    expect(await errnoOfCall(unary((cb) => client.unpinUserPages({ pinnerPid: pid, pinId: 1n }, cb)))).to.equal('EACCES');
  });

  it('is EINVAL for the platform pinning without naming its own process (pinner_pid 0)', async () => {
    const { pid, addr } = await mapped();
    const platform = as(secrets.platformToken);
    expect(await errnoOfCall(unary((cb) => platform.pinUserPages({ pid, addr, length: 4096n, write: false, pinnerPid: 0 }, cb)))).to.equal('EINVAL');
  });

  it('is EPERM for a process reading or unmapping another process’s address space', async () => {
    const { pid, addr } = await mapped();
    const other = as(h.registry.openSession('other').credential);
    expect(await errnoOfCall(unary((cb) => other.getProcessMaps({ pid }, cb)))).to.equal('EPERM');
    expect(await errnoOfCall(unary((cb) => other.munmap({ pid, addr, length: 4096n }, cb)))).to.equal('EPERM');
  });
});

const PERIOD = Buffer.from(Array.from({ length: 251 }, (_, i) => i));

/** `length` bytes whose byte i is i mod 251: a prime period, so no two chunks of a stream look alike. */
function pattern(length: number): Buffer {
  return Buffer.alloc(length, PERIOD);
}

/**
 * The registry's bytes read once they stop growing: the count after a
 * round trip that changed nothing. A round trip on the same connection
 * follows everything the client sent before it (a cancel, the window it
 * stopped granting), so a still count has had its chance to grow.
 */
async function settledBytesRead(segments: CountingSegments, roundTrip: () => Promise<unknown>): Promise<number> {
  let before = -1;
  for (let tries = 0; tries < 100 && segments.bytesRead !== before; tries++) {
    before = segments.bytesRead;
    await roundTrip();
  }
  return segments.bytesRead;
}
