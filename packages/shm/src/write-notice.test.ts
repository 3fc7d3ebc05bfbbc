import * as fs from 'node:fs';
import * as net from 'node:net';
import * as path from 'node:path';
import { expect } from 'chai';
import { ErrnoError } from '@p2p/errno';
import { eventually, useTempShmDir } from '@p2p/testing';
import { MAX_SEGMENT_NAME_LENGTH } from './segment-name';
import { encodeWriteNotice, MAX_WRITE_NOTICE_BYTES, type WriteNotice, WriteNoticeDecoder, WRITE_NOTICE_SOCKET } from './write-notice';
import { WriteNoticeClient } from './write-notice-client';
import { WriteNoticeServer } from './write-notice-server';

const NOTICE: WriteNotice = { segment: 'pci-emu.1a2b3c4d.0000-03-00.0-bar0.g0.0', offset: 0x1000, length: 4 };

function expectEinval(operation: () => unknown, fragment: string): void {
  try {
    operation();
  } catch (error) {
    expect(error).to.be.instanceOf(ErrnoError);
    expect((error as ErrnoError).errno).to.equal('EINVAL');
    expect((error as ErrnoError).detail).to.include(fragment);
    return;
  }
  expect.fail('no EINVAL');
}

describe('write notices: the record', () => {
  it('round-trips a notice: 18 bytes of header, then the name', () => {
    const record = encodeWriteNotice(NOTICE);
    expect(record.length).to.equal(18 + NOTICE.segment.length);
    expect(new WriteNoticeDecoder().decode(record)).to.deep.equal([NOTICE]);
  });

  it('carries offsets and lengths up to 2^53 - 1', () => {
    const far = { segment: 'x', offset: 2 ** 52, length: 2 ** 52 - 1 };
    expect(new WriteNoticeDecoder().decode(encodeWriteNotice(far))).to.deep.equal([far]);
  });

  it('is at most MAX_WRITE_NOTICE_BYTES, for a name of NAME_MAX bytes', () => {
    expect(encodeWriteNotice({ segment: 'x'.repeat(MAX_SEGMENT_NAME_LENGTH), offset: 0, length: 1 }).length).to.equal(MAX_WRITE_NOTICE_BYTES);
  });

  it('refuses to encode what no record holds: EINVAL for a bad name, an empty range, one past 2^53', () => {
    expectEinval(() => encodeWriteNotice({ ...NOTICE, segment: '../etc/passwd' }), 'segment name');
    expectEinval(() => encodeWriteNotice({ ...NOTICE, length: 0 }), 'non-empty');
    expectEinval(() => encodeWriteNotice({ ...NOTICE, offset: 2 ** 53 - 1, length: 2 }), 'below 2^53');
  });

  it('decodes records split anywhere across chunks, keeping only the partial one', () => {
    const second = { segment: 'pci-emu.x.bar2.g1.3', offset: 7, length: 9 };
    const bytes = Buffer.concat([encodeWriteNotice(NOTICE), encodeWriteNotice(second)]);
    for (let cut = 0; cut <= bytes.length; cut++) {
      const decoder = new WriteNoticeDecoder();
      expect([...decoder.decode(bytes.subarray(0, cut)), ...decoder.decode(bytes.subarray(cut))], `cut at ${cut}`).to.deep.equal([NOTICE, second]);
    }
  });

  it('decodes byte by byte', () => {
    const decoder = new WriteNoticeDecoder();
    const seen = [...encodeWriteNotice(NOTICE)].flatMap((byte) => decoder.decode(Buffer.from([byte])));
    expect(seen).to.deep.equal([NOTICE]);
  });

  it('EINVAL for a version it does not know, as soon as the first byte is in', () => {
    const record = encodeWriteNotice(NOTICE);
    record[0] = 2;
    expectEinval(() => new WriteNoticeDecoder().decode(record.subarray(0, 2)), 'version 2');
  });

  it('EINVAL for an empty name, a name that is no segment name, an empty range, an offset past 2^53', () => {
    const header = encodeWriteNotice(NOTICE);
    const withName = (name: string): Buffer => Buffer.concat([Buffer.from([1, name.length]), header.subarray(2, 18), Buffer.from(name, 'latin1')]);
    expectEinval(() => new WriteNoticeDecoder().decode(Buffer.from([1, 0])), 'name length 0');
    expectEinval(() => new WriteNoticeDecoder().decode(withName('a/b')), 'no segment name');
    const empty = encodeWriteNotice(NOTICE);
    empty.writeUInt32LE(0, 10);
    expectEinval(() => new WriteNoticeDecoder().decode(empty), 'no segment name');
    const huge = encodeWriteNotice(NOTICE);
    huge.writeUInt32LE(0xffff_ffff, 6);
    expectEinval(() => new WriteNoticeDecoder().decode(huge), '2^53+');
  });
});

describe('write notices: the socket', () => {
  const dir = useTempShmDir();
  const socketPath = (): string => path.join(dir(), WRITE_NOTICE_SOCKET);
  let servers: WriteNoticeServer[];
  let clients: WriteNoticeClient[];
  beforeEach(() => {
    servers = [];
    clients = [];
  });
  afterEach(async () => {
    for (const client of clients) client.close();
    for (const server of servers) await server.close();
  });

  async function listen(options: { maxConnections?: number; onNotice?: (notice: WriteNotice) => void; report?: (error: unknown) => void } = {}): Promise<{ server: WriteNoticeServer; seen: WriteNotice[] }> {
    const seen: WriteNotice[] = [];
    const server = await WriteNoticeServer.listen(socketPath(), options.onNotice ?? ((notice) => seen.push(notice)), options);
    servers.push(server);
    return { server, seen };
  }

  function client(retryAfterMs = 0, maxQueuedBytes?: number): WriteNoticeClient {
    const made = new WriteNoticeClient(socketPath(), { retryAfterMs, maxQueuedBytes });
    clients.push(made);
    return made;
  }

  function rawConnection(): Promise<net.Socket> {
    return new Promise((resolve, reject) => {
      const socket = net.createConnection(socketPath(), () => resolve(socket));
      socket.once('error', reject);
    });
  }

  const closed = (socket: net.Socket): Promise<void> => new Promise((resolve) => (socket.closed ? resolve() : socket.once('close', () => resolve())));

  it('delivers the notices of a client in order, connecting on the first', async () => {
    const { seen } = await listen();
    const writer = client();
    for (let i = 0; i < 100; i++) writer.notify(NOTICE.segment, i * 4, 4);
    await eventually('100 notices', () => seen.length === 100);
    expect(seen.map((notice) => notice.offset)).to.deep.equal(Array.from({ length: 100 }, (_, i) => i * 4));
    expect([writer.sent, writer.dropped]).to.deep.equal([100, 0]);
  });

  it('drops notices while nobody listens, without throwing, and reconnects once someone does', async () => {
    const writer = client(20);
    writer.notify(NOTICE.segment, 0, 4);
    await eventually('the failed connect to be seen', () => {
      writer.notify(NOTICE.segment, 0, 4);
      return writer.dropped > 0;
    });
    const { seen } = await listen();
    await eventually('a notice through the new listener', () => {
      writer.notify(NOTICE.segment, 8, 4);
      return seen.length > 0;
    });
    expect(seen[0]).to.deep.equal({ ...NOTICE, offset: 8 });
  });

  it('waits retryAfterMs after a failed connect before it tries again', async () => {
    const writer = client(60_000);
    writer.notify(NOTICE.segment, 0, 4);
    await eventually('the failed connect to be seen', () => {
      writer.notify(NOTICE.segment, 0, 4);
      return writer.dropped > 0;
    });
    const { seen, server } = await listen();
    const before = writer.dropped;
    writer.notify(NOTICE.segment, 4, 4);
    expect(writer.dropped).to.equal(before + 1);
    await new Promise((resolve) => setTimeout(resolve, 50));
    expect([seen.length, server.connections]).to.deep.equal([0, 0]);
  });

  it('reconnects after the listener went away and a new one came', async () => {
    const first = await listen();
    const writer = client();
    writer.notify(NOTICE.segment, 0, 4);
    await eventually('the first notice', () => first.seen.length === 1);
    await first.server.close();
    const second = await listen();
    await eventually('a notice through the second listener', () => {
      writer.notify(NOTICE.segment, 4, 4);
      return second.seen.length > 0;
    });
    expect(second.seen[0]!.offset).to.equal(4);
  });

  it('drops past maxQueuedBytes while the listener does not read', async () => {
    const { server } = await listen();
    const writer = client(0, 1024);
    // Before the connect completes, every write queues in the socket.
    for (let i = 0; i < 1000; i++) writer.notify(NOTICE.segment, 0, 4);
    expect(writer.dropped).to.be.greaterThan(900);
    expect(writer.sent).to.be.lessThan(100);
    await eventually('the connection', () => server.connections === 1);
  });

  it('drops a malformed notice at the writer, and never sends it', async () => {
    const { seen } = await listen();
    const writer = client();
    writer.notify('no/such', 0, 4);
    writer.notify(NOTICE.segment, 0, 0);
    writer.notify(NOTICE.segment, 0, 4);
    await eventually('the good notice', () => seen.length === 1);
    expect([writer.sent, writer.dropped]).to.deep.equal([1, 2]);
  });

  it('closes a connection that sends a malformed record, and only that one', async () => {
    const { seen, server } = await listen();
    const good = client();
    good.notify(NOTICE.segment, 0, 4);
    await eventually('the good connection', () => seen.length === 1);
    const bad = await rawConnection();
    bad.write(Buffer.from([9, 9, 9]));
    await closed(bad);
    good.notify(NOTICE.segment, 4, 4);
    await eventually('the second good notice', () => seen.length === 2);
    expect(server.connections).to.equal(1);
  });

  it('passes a handler failure to report and goes on with the next notice', async () => {
    const failures: unknown[] = [];
    const seen: number[] = [];
    await listen({
      onNotice: (notice) => {
        if (notice.offset === 0) throw new Error('the device failed');
        seen.push(notice.offset);
      },
      report: (error) => failures.push(error),
    });
    const writer = client();
    writer.notify(NOTICE.segment, 0, 4);
    writer.notify(NOTICE.segment, 4, 4);
    await eventually('the second notice', () => seen.length === 1);
    expect(failures).to.have.length(1);
  });

  it('serves at most maxConnections at once', async () => {
    const { server } = await listen({ maxConnections: 2 });
    const sockets = [await rawConnection(), await rawConnection()];
    await eventually('two connections', () => server.connections === 2);
    const third = await rawConnection();
    await closed(third);
    expect(server.connections).to.equal(2);
    for (const socket of sockets) socket.destroy();
  });

  it('replaces a stale socket, refuses to replace anything else (EEXIST), and unlinks its own on close', async () => {
    const stale = net.createServer();
    await new Promise<void>((resolve) => stale.listen(socketPath(), resolve));
    // Closing a listener unlinks its path; a hard link keeps the socket file as a crashed process leaves it.
    fs.linkSync(socketPath(), `${socketPath()}.kept`);
    await new Promise((resolve) => stale.close(resolve));
    fs.renameSync(`${socketPath()}.kept`, socketPath());
    const { server } = await listen();
    expect(fs.lstatSync(socketPath()).isSocket()).to.equal(true);
    await server.close();
    expect(fs.existsSync(socketPath())).to.equal(false);
    fs.writeFileSync(socketPath(), 'not a socket');
    try {
      await WriteNoticeServer.listen(socketPath(), () => undefined);
      expect.fail('listened over a regular file');
    } catch (error) {
      expect((error as ErrnoError).errno).to.equal('EEXIST');
    }
  });

  it('EINVAL for a path too long for sun_path', async () => {
    try {
      await WriteNoticeServer.listen(path.join(dir(), 'x'.repeat(120)), () => undefined);
      expect.fail('listened');
    } catch (error) {
      expect((error as ErrnoError).errno).to.equal('EINVAL');
    }
  });
});
