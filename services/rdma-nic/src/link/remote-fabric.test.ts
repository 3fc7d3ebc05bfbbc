import { randomBytes } from 'node:crypto';
import * as fs from 'node:fs';
import * as net from 'node:net';
import { Client, credentials, Metadata, status as Code, type StatusObject } from '@grpc/grpc-js';
import { expect } from 'chai';
import { RegistrySession } from '@p2p/dmabuf-client';
import { errnoOf } from '@p2p/status';
import { eventually, freePort, tempShmDir, platformSecretsOf } from '@p2p/testing';
import { WcStatus } from '../verbs/enums';
import { RNR_NAK, WireOp, type WireRequest, type WireResponse } from '../transport/fabric';
import { copyAcross } from '../memory/copy';
import { ImportGrant } from '../registry/importer-memory';
import { RemoteFabric } from './remote-fabric';
import { MemoryEndpoint } from './testing/memory-endpoint';
import { type InProcessRegistry, startRegistryInProcess } from './testing/registry-in-process';

const GID_A = '::ffff:127.0.0.2';
const GID_B = '::ffff:127.0.0.3';
const MiB = 1024 * 1024;
const QPN_A = 0x11;
const QPN_B = 0x22;

function request(op: WireOp, fields: Partial<WireRequest> = {}): WireRequest {
  return { op, srcGid: GID_A, srcQpn: QPN_A, psn: 0, remoteAddr: 0, rkey: 0x1234, length: 0, payload: [], withImm: false, immData: 0, compareAdd: 0n, swap: 0n, ...fields };
}

/** The answer to one request, with READ data copied out (its views are valid only during reply). */
function call(fabric: RemoteFabric, dgid: string, req: WireRequest, timeoutMs = 5000): Promise<WireResponse | undefined> {
  return new Promise((resolve) => {
    fabric.request(dgid, QPN_B, req, timeoutMs, (response) =>
      resolve(response === undefined ? undefined : { ...response, data: response.data?.map((view) => Buffer.from(view)) }),
    );
  });
}

describe('RemoteFabric: the wire between NIC processes', function () {
  this.timeout(30_000);
  let registry: InProcessRegistry;
  let sessionA: RegistrySession;
  let sessionB: RegistrySession;
  const fabrics: RemoteFabric[] = [];
  const extraSessions: RegistrySession[] = [];
  const extraDirs: string[] = [];
  const extraStops: (() => Promise<void>)[] = [];

  before(async () => {
    registry = await startRegistryInProcess();
    // The NICs' own sessions: the platform's, as the rdma-nic service opens them.
    const privilegedCredential = platformSecretsOf(registry.shmDir).platformToken;
    sessionA = await RegistrySession.open(registry.address, { name: 'nic-a', shmDir: registry.shmDir, privilegedCredential });
    sessionB = await RegistrySession.open(registry.address, { name: 'nic-b', shmDir: registry.shmDir, privilegedCredential });
  });
  after(async () => {
    await Promise.all([sessionA?.close(), sessionB?.close()]);
    await registry?.stop();
  });
  afterEach(async () => {
    await Promise.all(fabrics.splice(0).map((fabric) => fabric.close()));
    await Promise.all(extraSessions.splice(0).map((session) => session.close()));
    for (const dir of extraDirs.splice(0)) fs.rmSync(dir, { recursive: true, force: true });
    for (const stop of extraStops.splice(0)) await stop();
  });

  async function nic(gid: string, session: RegistrySession, wirePort: number, ringBytes = 16 * MiB, memoryBytes = 32 * MiB) {
    const fabric = await RemoteFabric.start({ gid, wirePort, registry: session, ringBytes });
    fabrics.push(fabric);
    const endpoint = new MemoryEndpoint(gid, memoryBytes);
    fabric.attach(endpoint);
    return { fabric, endpoint };
  }

  async function pair(options: { ringBytes?: number; sessionB?: RegistrySession } = {}) {
    const port = await freePort();
    const a = await nic(GID_A, sessionA, port, options.ringBytes);
    const b = await nic(GID_B, options.sessionB ?? sessionB, port, options.ringBytes);
    return { a, b, port };
  }

  /** One WRITE answered: the link is open and each side has heard whether the other maps its ring. */
  async function warmUp(a: { fabric: RemoteFabric }): Promise<void> {
    expect(await call(a.fabric, GID_B, request(WireOp.RDMA_WRITE, { length: 1, payload: [Buffer.from([1])] }))).to.deep.equal({
      status: WcStatus.SUCCESS,
      data: undefined,
    });
  }

  it('carries pipelined 4 KiB and 1 MiB WRITEs byte-exact through the ring, answered in request order, many packets a frame', async () => {
    const { a, b } = await pair();
    await warmUp(a);
    const before = a.fabric.counters;
    const source = randomBytes(24 * MiB);
    const writes: { offset: number; length: number }[] = [];
    for (let i = 0; i < 1024; i++) writes.push({ offset: i * 4096, length: 4096 });
    for (let i = 0; i < 8; i++) writes.push({ offset: 8 * MiB + i * MiB, length: MiB });
    const order: number[] = [];
    const answers = writes.map(
      ({ offset, length }, i) =>
        new Promise<WireResponse | undefined>((resolve) => {
          // Two SGEs per request, as a gather list: the wire copies both.
          const half = length / 2;
          const payload = [source.subarray(offset, offset + half), source.subarray(offset + half, offset + length)];
          a.fabric.request(GID_B, QPN_B, request(WireOp.RDMA_WRITE, { psn: i, remoteAddr: offset, length, payload }), 5000, (response) => {
            order.push(i);
            resolve(response);
          });
        }),
    );
    const responses = await Promise.all(answers);
    expect(responses.every((response) => response?.status === WcStatus.SUCCESS)).to.equal(true);
    expect(order).to.deep.equal(writes.map((_, i) => i));
    for (const { offset, length } of writes) expect(b.endpoint.memory.subarray(offset, offset + length).equals(source.subarray(offset, offset + length))).to.equal(true);
    const after = a.fabric.counters;
    expect(after.ringBytesSent - before.ringBytesSent).to.equal(1024 * 4096 + 8 * MiB);
    expect(after.inlineBytesSent - before.inlineBytesSent).to.equal(0);
    expect(b.fabric.counters.ringBytesReceived).to.be.at.least(1024 * 4096 + 8 * MiB);
    // Every packet of a turn shares one frame, and the frames go through the frame ring, both ways.
    expect(after.packetsSent - before.packetsSent).to.equal(writes.length);
    expect(after.framesSent - before.framesSent).to.be.below(20);
    expect(after.ringFramesSent - before.ringFramesSent).to.equal(after.framesSent - before.framesSent);
    expect(b.fabric.counters.ringFramesSent).to.be.above(0);
  });

  it('wakes a peer that sleeps on its frame ring with an empty message on the stream, and answers through the rings', async () => {
    const { a, b } = await pair();
    await warmUp(a);
    for (let round = 0; round < 3; round++) {
      // Both NICs go idle: past IDLE_BEFORE_SLEEP_MS each sleeps on the other's frame ring.
      await new Promise((resolve) => setTimeout(resolve, 30));
      const before = { a: a.fabric.counters, b: b.fabric.counters };
      const payload = randomBytes(4096);
      expect((await call(a.fabric, GID_B, request(WireOp.RDMA_WRITE, { psn: round + 1, remoteAddr: 0, length: 4096, payload: [payload] })))?.status).to.equal(WcStatus.SUCCESS);
      expect(b.endpoint.memory.subarray(0, 4096).equals(payload)).to.equal(true);
      const sent = { a: a.fabric.counters.framesSent - before.a.framesSent, b: b.fabric.counters.framesSent - before.b.framesSent };
      expect(a.fabric.counters.ringFramesSent - before.a.ringFramesSent).to.equal(sent.a);
      expect(b.fabric.counters.ringFramesSent - before.b.ringFramesSent).to.equal(sent.b);
      // Each side's frame went through the ring; the wake-up is the one message on the stream each way.
      expect(b.fabric.counters.framesReceived - before.b.framesReceived).to.equal(sent.a + 1);
      expect(a.fabric.counters.framesReceived - before.a.framesReceived).to.equal(sent.b + 1);
    }
  });

  it('returns RDMA READ data through the responder ring, and the GID of the requester to the responder', async () => {
    const { a, b } = await pair();
    await warmUp(a);
    const content = randomBytes(3 * MiB);
    content.copy(b.endpoint.memory, 0);
    const reads = await Promise.all(
      [0, 1, 4096, MiB, 3 * MiB - 100].map((offset, i) =>
        call(a.fabric, GID_B, request(WireOp.RDMA_READ, { psn: i, remoteAddr: offset, length: Math.min(MiB, 3 * MiB - offset) })),
      ),
    );
    reads.forEach((response, i) => {
      const offset = [0, 1, 4096, MiB, 3 * MiB - 100][i]!;
      expect(response?.status).to.equal(WcStatus.SUCCESS);
      expect(Buffer.concat(response!.data!).equals(content.subarray(offset, offset + Math.min(MiB, 3 * MiB - offset)))).to.equal(true);
    });
    expect(b.fabric.counters.ringBytesSent).to.be.at.least(3 * MiB);

    await call(a.fabric, GID_B, request(WireOp.SEND, { length: 3, payload: [Buffer.from('abc')], withImm: true, immData: 0xdeadbeef }));
    expect(b.endpoint.sends).to.deep.equal([{ qpn: QPN_B, srcGid: GID_A, payload: Buffer.from('abc'), withImm: true, immData: 0xdeadbeef }]);
  });

  it('carries every request field as the requester set it', async () => {
    const { a, b } = await pair();
    const seen: WireRequest[] = [];
    b.endpoint.onReceive = (req) => seen.push({ ...req, payload: [] });
    b.endpoint.drop = () => true;
    const sent = request(WireOp.CMP_SWAP, {
      srcQpn: 0xabcdef,
      psn: 0xfffffe,
      remoteAddr: 2 ** 52 + 12345,
      rkey: 0xfedcba98,
      length: 8,
      withImm: true,
      immData: 0x89abcdef,
      compareAdd: 0xffff_0000_ffff_0001n,
      swap: 0x8000_0000_0000_0000n,
    });
    expect(await call(a.fabric, GID_B, sent, 100)).to.equal(undefined);
    expect(seen).to.deep.equal([{ ...sent, payload: [] }]);
  });

  it('answers atomics with the original value, and NAK statuses as they are', async () => {
    const { a, b } = await pair();
    b.endpoint.memory.writeBigUInt64LE(40n, 64);
    const add = await call(a.fabric, GID_B, request(WireOp.FETCH_ADD, { remoteAddr: 64, compareAdd: 2n }));
    expect(add).to.deep.equal({ status: WcStatus.SUCCESS, original: 40n, data: undefined });
    const swap = await call(a.fabric, GID_B, request(WireOp.CMP_SWAP, { psn: 1, remoteAddr: 64, compareAdd: 42n, swap: 0xffff_ffff_ffff_fffen }));
    expect(swap?.original).to.equal(42n);
    expect(b.endpoint.memory.readBigUInt64LE(64)).to.equal(0xffff_ffff_ffff_fffen);
    const denied = await call(a.fabric, GID_B, request(WireOp.RDMA_WRITE, { psn: 2, rkey: 99, length: 1, payload: [Buffer.from([1])] }));
    expect(denied).to.deep.equal({ status: WcStatus.REM_ACCESS_ERR, data: undefined });
  });

  it('carries RNR NAKs with their timer, and the RNR-cleared hint back to the requester', async () => {
    const { a, b } = await pair();
    b.endpoint.rnrTimer = 14;
    const rnr = await call(a.fabric, GID_B, request(WireOp.SEND, { length: 2, payload: [Buffer.from('hi')] }));
    expect(rnr).to.deep.equal({ status: RNR_NAK, rnrTimer: 14, data: undefined });
    b.fabric.rnrCleared(GID_A, QPN_A);
    await eventually('the hint', () => a.endpoint.rnrRetries.length === 1);
    expect(a.endpoint.rnrRetries).to.deep.equal([QPN_A]);
  });

  it('times out a request the responder drops, and still matches the answers around it', async () => {
    const { a, b } = await pair();
    await warmUp(a);
    b.endpoint.drop = (req) => req.psn === 1;
    const started = Date.now();
    const ops = [WireOp.RDMA_READ, WireOp.RDMA_WRITE, WireOp.RDMA_WRITE];
    const answers = await Promise.all(
      ops.map((op, psn) => call(a.fabric, GID_B, request(op, { psn, remoteAddr: 64, length: 8, payload: op === WireOp.RDMA_WRITE ? [Buffer.alloc(8, psn)] : [] }), 300)),
    );
    expect(answers[0]?.status).to.equal(WcStatus.SUCCESS);
    expect(answers[1]).to.equal(undefined);
    expect(answers[2]?.status).to.equal(WcStatus.SUCCESS);
    expect(Date.now() - started).to.be.at.least(290);
    expect(a.fabric.counters.timeouts).to.equal(1);
    expect([...b.endpoint.memory.subarray(64, 72)]).to.deep.equal(new Array(8).fill(2));
    // The dropped payload's ring bytes were consumed all the same: the ring keeps flowing.
    const next = await call(a.fabric, GID_B, request(WireOp.RDMA_WRITE, { psn: 3, length: 8, payload: [Buffer.alloc(8)] }));
    expect(next?.status).to.equal(WcStatus.SUCCESS);
    // Nothing went inline, not even the first request: the link opened once its ring was mapped.
    expect(a.fabric.counters.inlineBytesSent).to.equal(0);
  });

  it('a retransmission rides on a copy the peer has not answered yet, and goes out again once the peer dropped it', async () => {
    const { a, b } = await pair();
    await warmUp(a);
    const before = b.endpoint.received;
    // Dropped the first time (a QP not yet in RTR, say): the retransmission is sent again and answered.
    let drops = 1;
    b.endpoint.drop = () => drops-- > 0;
    expect(await call(a.fabric, GID_B, request(WireOp.RDMA_READ, { psn: 7, length: 8 }), 50)).to.equal(undefined);
    const again = await call(a.fabric, GID_B, request(WireOp.RDMA_READ, { psn: 7, length: 8 }), 500);
    expect(again?.status).to.equal(WcStatus.SUCCESS);
    expect(b.endpoint.received - before).to.equal(2);

    // While the first copy is unanswered, a second transmission of the PSN adds nothing to the stream: one
    // copy reaches the responder, and the answer goes to the transmission still waiting for it.
    const counted = b.endpoint.received;
    const first = call(a.fabric, GID_B, request(WireOp.RDMA_READ, { psn: 8, length: 8 }), 5000);
    const second = call(a.fabric, GID_B, request(WireOp.RDMA_READ, { psn: 8, length: 8 }), 200);
    const [one, two] = await Promise.all([first, second]);
    expect(one?.status).to.equal(WcStatus.SUCCESS);
    expect(two).to.equal(undefined);
    expect(b.endpoint.received - counted).to.equal(1);
  });

  it('reads the answers that came while its event loop was blocked before a timer declares the peer silent', async () => {
    const { a, b } = await pair();
    await warmUp(a);
    b.endpoint.onReceive = () => {
      // Both NICs share this process: the responder's stall blocks the requester's timers too, past the
      // timeout. When the loop runs again, the timer fires first, but the answer is read before it decides.
      const until = Date.now() + 120;
      while (Date.now() < until);
    };
    const answer = await call(a.fabric, GID_B, request(WireOp.RDMA_READ, { psn: 5, length: 8 }), 50);
    expect(answer?.status).to.equal(WcStatus.SUCCESS);
    expect(a.fabric.counters.timeouts).to.equal(0);
  });

  it('times out requests to a closed peer, dials a dead one at most every 100 ms, and reconnects once it is back', async () => {
    const { a, b, port } = await pair();
    await warmUp(a);
    await b.fabric.close();
    fabrics.splice(fabrics.indexOf(b.fabric), 1);

    const failuresBefore = a.fabric.counters.connectFailures;
    const started = Date.now();
    const lost: Promise<WireResponse | undefined>[] = [];
    while (Date.now() - started < 600) {
      lost.push(call(a.fabric, GID_B, request(WireOp.RDMA_WRITE, { psn: lost.length, length: 4, payload: [Buffer.from('lost')] }), 200));
      await new Promise((resolve) => setTimeout(resolve, 20));
    }
    expect(await Promise.all(lost)).to.satisfy((answers: unknown[]) => answers.every((answer) => answer === undefined));
    const failures = a.fabric.counters.connectFailures - failuresBefore;
    expect(failures).to.be.within(1, 7);

    const again = await nic(GID_B, sessionB, port);
    let answer: WireResponse | undefined;
    for (let attempt = 0; attempt < 10 && answer === undefined; attempt++) {
      answer = await call(a.fabric, GID_B, request(WireOp.RDMA_WRITE, { psn: 100 + attempt, remoteAddr: 10, length: 4, payload: [Buffer.from('back')] }), 500);
    }
    expect(answer?.status).to.equal(WcStatus.SUCCESS);
    expect(again.endpoint.memory.subarray(10, 14).toString()).to.equal('back');
  });

  it('carries requests a NIC sends to its own GID (QPs of one NIC connected to each other)', async () => {
    const { a } = await pair();
    const source = randomBytes(64 * 1024);
    const answers = await Promise.all(
      [0, 1, 2, 3].map((i) =>
        call(a.fabric, GID_A, request(WireOp.RDMA_WRITE, { psn: i, remoteAddr: i * 16384, length: 16384, payload: [source.subarray(i * 16384, (i + 1) * 16384)] })),
      ),
    );
    expect(answers.every((response) => response?.status === WcStatus.SUCCESS)).to.equal(true);
    expect(a.endpoint.memory.subarray(0, source.length).equals(source)).to.equal(true);
  });

  it('runs three NICs that all talk to each other at once', async () => {
    const port = await freePort();
    const gids = [GID_A, GID_B, '::ffff:127.0.0.4'];
    const nics = await Promise.all(gids.map((gid, i) => nic(gid, i === 0 ? sessionA : sessionB, port, MiB, MiB)));
    const sources = nics.map(() => randomBytes(64 * 1024));
    const answers: Promise<WireResponse | undefined>[] = [];
    nics.forEach((from, i) =>
      nics.forEach((to, j) => {
        if (i === j) return;
        // Each sender writes its own slice of the receiver's memory, in 4 KiB pieces.
        for (let k = 0; k < 16; k++) {
          const at = k * 4096;
          const req = { ...request(WireOp.RDMA_WRITE, { psn: k, remoteAddr: i * 65536 + at, length: 4096, payload: [sources[i]!.subarray(at, at + 4096)] }), srcGid: from.endpoint.gid };
          answers.push(new Promise((resolve) => from.fabric.request(to.endpoint.gid, QPN_B, req, 5000, resolve)));
        }
      }),
    );
    expect((await Promise.all(answers)).every((response) => response?.status === WcStatus.SUCCESS)).to.equal(true);
    nics.forEach((to, j) =>
      nics.forEach((_, i) => {
        if (i !== j) expect(to.endpoint.memory.subarray(i * 65536, (i + 1) * 65536).equals(sources[i]!), `${i} -> ${j}`).to.equal(true);
      }),
    );
    // Hints go back on the stream the requester opened.
    nics[2]!.fabric.rnrCleared(GID_A, 7);
    nics[0]!.fabric.rnrCleared('::ffff:127.0.0.4', 9);
    await eventually('the hints', () => nics[0]!.endpoint.rnrRetries.length === 1 && nics[2]!.endpoint.rnrRetries.length === 1);
    expect([nics[0]!.endpoint.rnrRetries, nics[2]!.endpoint.rnrRetries]).to.deep.equal([[7], [9]]);
  });

  it('ends a stream whose message is no ConnectRequest with EINVAL, not INTERNAL, and goes on serving', async () => {
    const { a, port } = await pair();
    const peer = new Client(`127.0.0.3:${port}`, credentials.createInsecure());
    try {
      const status = await new Promise<StatusObject>((resolve) => {
        const stream = peer.makeBidiStreamRequest('/p2p.rdma.v1.RdmaWireService/Connect', (bytes: Buffer) => bytes, (bytes: Buffer) => bytes, new Metadata());
        stream.on('error', () => undefined);
        stream.on('status', resolve);
        // Field 1 (the frame), length-delimited, announcing 127 bytes of which none follow.
        stream.write(Buffer.from([0x0a, 0x7f]));
      });
      expect(status.code).to.equal(Code.INVALID_ARGUMENT);
      expect(errnoOf(Object.assign(new Error(status.details), status))).to.equal('EINVAL');
    } finally {
      peer.close();
    }
    await warmUp(a);
  });

  it('answers undefined when nothing listens at the GID', async () => {
    const { a } = await pair();
    expect(await call(a.fabric, '::ffff:127.0.0.9', request(WireOp.RDMA_READ, { length: 1 }), 200)).to.equal(undefined);
    expect(await call(a.fabric, 'not a gid', request(WireOp.RDMA_READ, { length: 1 }), 50)).to.equal(undefined);
  });

  it('falls back to inline payloads, byte-exact both ways, when the NICs share no tmpfs', async () => {
    const dir = tempShmDir('p2p-rdma-wire-other-');
    extraDirs.push(dir);
    const elsewhere = await RegistrySession.open(registry.address, {
      name: 'nic-b-elsewhere',
      shmDir: dir,
      privilegedCredential: platformSecretsOf(registry.shmDir).platformToken,
    });
    extraSessions.push(elsewhere);
    const { a, b } = await pair({ sessionB: elsewhere });
    const source = randomBytes(MiB + 4096);
    const written = await Promise.all([
      call(a.fabric, GID_B, request(WireOp.RDMA_WRITE, { remoteAddr: 0, length: MiB, payload: [source.subarray(0, MiB)] })),
      call(a.fabric, GID_B, request(WireOp.RDMA_WRITE, { psn: 1, remoteAddr: MiB, length: 4096, payload: [source.subarray(MiB)] })),
    ]);
    expect(written.map((response) => response?.status)).to.deep.equal([WcStatus.SUCCESS, WcStatus.SUCCESS]);
    expect(b.endpoint.memory.subarray(0, MiB + 4096).equals(source)).to.equal(true);
    const read = await call(a.fabric, GID_B, request(WireOp.RDMA_READ, { psn: 2, remoteAddr: 100, length: MiB }));
    expect(Buffer.concat(read!.data!).equals(source.subarray(100, 100 + MiB))).to.equal(true);
    // And the other way, B's requests to A.
    const back = await new Promise<WireResponse | undefined>((resolve) =>
      b.fabric.request(GID_A, QPN_A, { ...request(WireOp.RDMA_WRITE, { remoteAddr: 0, length: 4096, payload: [source.subarray(0, 4096)] }), srcGid: GID_B }, 5000, resolve),
    );
    expect(back?.status).to.equal(WcStatus.SUCCESS);
    expect(a.endpoint.memory.subarray(0, 4096).equals(source.subarray(0, 4096))).to.equal(true);
    for (const fabric of [a.fabric, b.fabric]) {
      expect(fabric.counters.ringBytesSent).to.equal(0);
      expect(fabric.counters.ringBytesReceived).to.equal(0);
    }
    expect(a.fabric.counters.inlineBytesSent).to.equal(MiB + 4096);
    expect(b.fabric.counters.inlineBytesSent).to.equal(MiB + 4096);
  });

  /** NIC B on a registry of its own: another host, which shares neither tmpfs nor registry with A. */
  async function otherHost(): Promise<RegistrySession> {
    const other = await startRegistryInProcess();
    extraStops.push(() => other.stop());
    const session = await RegistrySession.open(other.address, { name: 'nic-b-other-host', shmDir: other.shmDir, privilegedCredential: platformSecretsOf(other.shmDir).platformToken });
    extraSessions.push(session);
    return session;
  }

  it('moves payloads between hosts over the bulk stream, byte-exact both ways and in order, and small ones inline', async () => {
    const { a, b } = await pair({ sessionB: await otherHost() });
    const source = randomBytes(8 * MiB);
    // Interleaved sizes: stream and inline payloads must each land where their own packet says.
    const writes: { offset: number; length: number }[] = [];
    for (let i = 0, offset = 0; offset < 6 * MiB; i++) {
      const length = [MiB, 4096, 64 * 1024, 1, 16 * 1024, 300 * 1024][i % 6];
      writes.push({ offset, length });
      offset += length;
    }
    const written = await Promise.all(
      writes.map(({ offset, length }, psn) => call(a.fabric, GID_B, request(WireOp.RDMA_WRITE, { psn, remoteAddr: offset, length, payload: [source.subarray(offset, offset + length)] }))),
    );
    expect(written.every((response) => response?.status === WcStatus.SUCCESS)).to.equal(true);
    const end = writes.at(-1)!.offset + writes.at(-1)!.length;
    expect(b.endpoint.memory.subarray(0, end).equals(source.subarray(0, end))).to.equal(true);
    const read = await call(a.fabric, GID_B, request(WireOp.RDMA_READ, { psn: writes.length, remoteAddr: 100, length: 2 * MiB }));
    expect(Buffer.concat(read!.data!).equals(source.subarray(100, 100 + 2 * MiB))).to.equal(true);
    const streamed = writes.filter(({ length }) => length >= 16 * 1024).reduce((sum, { length }) => sum + length, 0);
    expect(a.fabric.counters.streamBytesSent).to.equal(streamed);
    expect(b.fabric.counters.streamBytesReceived).to.equal(streamed);
    expect(a.fabric.counters.inlineBytesSent).to.equal(end - streamed);
    expect(b.fabric.counters.streamBytesSent).to.equal(2 * MiB);
    expect(a.fabric.counters.streamBytesReceived).to.equal(2 * MiB);
    for (const fabric of [a.fabric, b.fabric]) expect(fabric.counters.ringBytesSent).to.equal(0);
    // And B's requests to A ride the same stream the other way.
    const back = await new Promise<WireResponse | undefined>((resolve) =>
      b.fabric.request(GID_A, QPN_A, { ...request(WireOp.RDMA_WRITE, { remoteAddr: 0, length: MiB, payload: [source.subarray(0, MiB)] }), srcGid: GID_B }, 5000, resolve),
    );
    expect(back?.status).to.equal(WcStatus.SUCCESS);
    expect(a.endpoint.memory.subarray(0, MiB).equals(source.subarray(0, MiB))).to.equal(true);
  });

  it('moves a payload larger than the receiving ring over the bulk stream too, whole, both ways', async () => {
    const { a, b } = await pair({ sessionB: await otherHost(), ringBytes: MiB });
    const source = randomBytes(5 * MiB);
    const written = await call(a.fabric, GID_B, request(WireOp.RDMA_WRITE, { remoteAddr: 0, length: source.length, payload: [source] }));
    expect(written?.status).to.equal(WcStatus.SUCCESS);
    expect(b.endpoint.memory.subarray(0, source.length).equals(source)).to.equal(true);
    const read = await call(a.fabric, GID_B, request(WireOp.RDMA_READ, { psn: 1, remoteAddr: 0, length: 3 * MiB }));
    expect(Buffer.concat(read!.data!).equals(source.subarray(0, 3 * MiB))).to.equal(true);
    expect(a.fabric.counters.streamBytesSent).to.equal(5 * MiB);
    expect(b.fabric.counters.streamBytesSent).to.equal(3 * MiB);
    for (const fabric of [a.fabric, b.fabric]) expect(fabric.counters.inlineBytesSent).to.equal(0);
  });

  it('closes a bulk connection that presents no token it offered, and goes on serving', async () => {
    const { a, b } = await pair({ sessionB: await otherHost() });
    const stranger = net.connect(b.fabric.bulkPort, '127.0.0.3');
    await new Promise<void>((resolve) => stranger.once('connect', resolve));
    stranger.write(randomBytes(32));
    await new Promise<void>((resolve) => stranger.once('close', () => resolve()));
    const source = randomBytes(MiB);
    expect((await call(a.fabric, GID_B, request(WireOp.RDMA_WRITE, { length: MiB, payload: [source] })))?.status).to.equal(WcStatus.SUCCESS);
    expect(b.endpoint.memory.subarray(0, MiB).equals(source)).to.equal(true);
    expect(a.fabric.counters.streamBytesSent).to.equal(MiB);
  });

  it('sends inline what does not fit in a full ring, and what is larger than the ring', async () => {
    const { a, b } = await pair({ ringBytes: 64 * 1024 });
    await warmUp(a);
    const before = a.fabric.counters;
    const source = randomBytes(2 * MiB);
    const chunk = 16 * 1024;
    const answers: Promise<WireResponse | undefined>[] = [];
    for (let i = 0; i < 64; i++) {
      const offset = i * chunk;
      answers.push(call(a.fabric, GID_B, request(WireOp.RDMA_WRITE, { psn: i, remoteAddr: offset, length: chunk, payload: [source.subarray(offset, offset + chunk)] })));
    }
    answers.push(call(a.fabric, GID_B, request(WireOp.RDMA_WRITE, { psn: 64, remoteAddr: MiB, length: MiB, payload: [source.subarray(MiB)] })));
    expect((await Promise.all(answers)).every((response) => response?.status === WcStatus.SUCCESS)).to.equal(true);
    expect(b.endpoint.memory.subarray(0, 2 * MiB).equals(source)).to.equal(true);
    const after = a.fabric.counters;
    expect(after.ringBytesSent - before.ringBytesSent).to.be.at.least(chunk);
    expect(after.inlineBytesSent - before.inlineBytesSent).to.be.at.least(MiB);
    expect(after.ringBytesSent - before.ringBytesSent + after.inlineBytesSent - before.inlineBytesSent).to.equal(2 * MiB);
    // The ring frees as the responder consumes: later traffic uses it again.
    const ringBefore = a.fabric.counters.ringBytesSent;
    await call(a.fabric, GID_B, request(WireOp.RDMA_WRITE, { psn: 65, length: chunk, payload: [source.subarray(0, chunk)] }));
    expect(a.fabric.counters.ringBytesSent - ringBefore).to.equal(chunk);
  });

  /** An application's heap buffer registered on NIC A as ibv_reg_mr() does (an attach with the holder's fd), and its grant. */
  async function appMemory(size: number) {
    const app = await RegistrySession.open(registry.address, { name: 'app', shmDir: registry.shmDir });
    extraSessions.push(app);
    const { fd, bufferId } = await app.heapAllocate(size);
    const importer = await sessionA.importDmaBuf({ fd, holderPid: app.pid, importerBdf: '' });
    await importer.map();
    const grant = new ImportGrant(app.pid, fd, importer, '');
    const views = (offset: number, length: number): Uint8Array[] => {
      const out: Uint8Array[] = [];
      expect(importer.views(offset, length, out)).to.equal(true);
      return out;
    };
    /** Attachments to the buffer, NIC A's own included. */
    const attachments = async (): Promise<number> => (await sessionA.bufInfo()).find((info) => info.bufferId === bufferId)?.attachments.length ?? 0;
    return { app, fd, importer, grant, views, attachments };
  }

  it('moves a one-SGE WRITE and READ once, straight between the granted requester memory and the responder, and lets go of the grant with the MR', async () => {
    const { a, b } = await pair();
    await warmUp(a);
    const memory = await appMemory(2 * MiB);
    const source = randomBytes(MiB);
    copyAcross([source], memory.views(0, MiB), MiB);
    const write = (psn: number) =>
      call(a.fabric, GID_B, request(WireOp.RDMA_WRITE, { psn, remoteAddr: 0, length: MiB, payload: memory.views(0, MiB), local: { source: memory.grant, offset: 0 } }));
    // The first messages take the ring while the grant is offered; once B mapped it, B moves them itself.
    let psn = 0;
    await eventually('the grant to be mapped', async () => {
      expect((await write(psn++))?.status).to.equal(WcStatus.SUCCESS);
      return b.fabric.counters.directBytes > 0;
    });
    expect(await memory.attachments()).to.equal(2);
    b.endpoint.memory.fill(0, 0, MiB);
    const before = { a: a.fabric.counters, b: b.fabric.counters };
    expect((await write(psn++))?.status).to.equal(WcStatus.SUCCESS);
    expect(b.endpoint.memory.subarray(0, MiB).equals(source)).to.equal(true);
    expect(a.fabric.counters.ringBytesSent - before.a.ringBytesSent).to.equal(0);
    expect(a.fabric.counters.inlineBytesSent - before.a.inlineBytesSent).to.equal(0);
    expect(b.fabric.counters.directBytes - before.b.directBytes).to.equal(MiB);

    // READ: B puts the data in the requester's memory; the answer says how much landed and carries none.
    const content = randomBytes(64 * 1024);
    content.copy(b.endpoint.memory, 3 * MiB);
    const read = await call(a.fabric, GID_B, request(WireOp.RDMA_READ, { psn: psn++, remoteAddr: 3 * MiB, length: content.length, local: { source: memory.grant, offset: MiB } }));
    expect(read).to.deep.equal({ status: WcStatus.SUCCESS, data: undefined, landed: content.length });
    expect(Buffer.concat(memory.views(MiB, content.length)).equals(content)).to.equal(true);
    expect(b.fabric.counters.ringBytesSent - before.b.ringBytesSent).to.equal(0);

    // The MR goes: B detaches and closes its fd; later messages of that memory take the ring.
    memory.grant.release();
    await eventually("B's attachment to go", async () => (await memory.attachments()) === 1);
    const ringBefore = a.fabric.counters.ringBytesSent;
    expect((await write(psn++))?.status).to.equal(WcStatus.SUCCESS);
    expect(a.fabric.counters.ringBytesSent - ringBefore).to.equal(MiB);
  });

  it('keeps to the ring when the grant cannot be made (the holder closed its fd), and B holds nothing of it', async () => {
    const { a, b } = await pair();
    await warmUp(a);
    const memory = await appMemory(MiB);
    await memory.app.closeFd(memory.fd);
    for (let psn = 0; psn < 4; psn++) {
      const response = await call(a.fabric, GID_B, request(WireOp.RDMA_WRITE, { psn, length: 4096, payload: memory.views(0, 4096), local: { source: memory.grant, offset: 0 } }));
      expect(response?.status).to.equal(WcStatus.SUCCESS);
      await new Promise((resolve) => setTimeout(resolve, 20));
    }
    expect(b.fabric.counters.directBytes).to.equal(0);
    expect(await memory.attachments()).to.equal(1);
  });

  it('answers what waits with undefined on close, refuses later requests, and releases the rings', async () => {
    const buffersBefore = (await sessionA.bufInfo()).length;
    const { a, b } = await pair();
    await warmUp(a);
    await call(b.fabric, GID_A, { ...request(WireOp.RDMA_READ, { length: 8 }), srcGid: GID_B });
    expect((await sessionA.bufInfo()).length).to.equal(buffersBefore + 4);

    b.endpoint.drop = () => true;
    const waiting = call(a.fabric, GID_B, request(WireOp.RDMA_READ, { length: 8 }), 0);
    await eventually('the request to reach B', () => b.endpoint.received > 1);
    await a.fabric.close();
    expect(await waiting).to.equal(undefined);
    let refused: unknown = 'not answered';
    a.fabric.request(GID_B, QPN_B, request(WireOp.RDMA_READ, { length: 8 }), 0, (response) => (refused = response));
    expect(refused).to.equal(undefined);
    await b.fabric.close();
    await eventually('the rings to be freed', async () => (await sessionA.bufInfo()).length === buffersBefore);
  });

  it('refuses a bad ring size or GID, and an endpoint of another GID', async () => {
    const port = await freePort();
    for (const options of [{ gid: GID_A, ringBytes: 100_000 }, { gid: 'fe80::zz' }]) {
      const error = await RemoteFabric.start({ wirePort: port, registry: sessionA, ...options }).catch((e: unknown) => e);
      expect(error).to.have.property('errno', 'EINVAL');
    }
    const { fabric } = await nic(GID_A, sessionA, port);
    expect(() => fabric.attach(new MemoryEndpoint(GID_B, 8))).to.throw().with.property('errno', 'EINVAL');
  });
});
