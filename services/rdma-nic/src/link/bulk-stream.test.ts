import { execFileSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import * as fs from 'node:fs';
import * as net from 'node:net';
import * as os from 'node:os';
import * as path from 'node:path';
import { expect } from 'chai';
import { loadTlsConfig, PLAINTEXT, type TlsConfig } from '@p2p/auth';
import { errnoOf } from '@p2p/status';
import { eventually } from '@p2p/testing';
import { BulkListener, type BulkOffer, BulkReceiver, type BulkSender } from './bulk-stream';
import { WIRE_TLS_NAME } from './wire-options';

const HOST = '127.0.0.1';
const MiB = 1024 * 1024;
const RING = MiB;

/** A connected stream: the sender (the listener's end) and the receiver that dialled it, with what the receiver's link was told. */
async function connectedPair(listener: BulkListener, config: TlsConfig = PLAINTEXT, ringBytes = RING) {
  const offer = listener.offer();
  const receiver = await BulkReceiver.dial(HOST, offer.port, offer.token, ringBytes, config, WIRE_TLS_NAME, 5000);
  const sender = await offer.sender;
  expect(sender).to.not.equal(undefined);
  const events = { ready: 0, closed: [] as string[] };
  receiver.bind({ ready: () => events.ready++, closed: (reason) => events.closed.push(reason) });
  const senderClosed: string[] = [];
  sender!.bind({ ready: () => undefined, closed: (reason) => senderClosed.push(reason) });
  return { sender: sender!, receiver, events, senderClosed };
}

function take(receiver: BulkReceiver, locator: number, bytes: number): { outcome: string; data: Buffer } {
  const views: Uint8Array[] = [];
  const outcome = receiver.take(locator, bytes, views);
  return { outcome, data: Buffer.concat(views) };
}

/** take() once the payload is all in (polled), or its 'wait' after 5 s. */
async function takeWhenIn(receiver: BulkReceiver, locator: number, bytes: number): Promise<{ outcome: string; data: Buffer }> {
  let got = take(receiver, locator, bytes);
  for (const deadline = Date.now() + 5000; got.outcome === 'wait' && Date.now() < deadline; got = take(receiver, locator, bytes)) {
    await new Promise((resolve) => setTimeout(resolve, 5));
  }
  return got;
}

/** A connection closed: its reason, or a timeout. */
function closedReason(stream: BulkReceiver | BulkSender): Promise<string> {
  return new Promise((resolve) => stream.bind({ ready: () => undefined, closed: resolve }));
}

describe('the bulk streams between NICs of different hosts', function () {
  this.timeout(20_000);
  const listeners: BulkListener[] = [];
  const streams: (BulkSender | BulkReceiver)[] = [];
  afterEach(async () => {
    for (const stream of streams.splice(0)) stream.destroy();
    await Promise.all(listeners.splice(0).map((listener) => listener.close()));
  });
  async function listen(config: TlsConfig = PLAINTEXT): Promise<BulkListener> {
    const listener = await BulkListener.start(HOST, 0, config, undefined);
    listeners.push(listener);
    return listener;
  }
  async function pair(config: TlsConfig = PLAINTEXT, ringBytes = RING) {
    const connected = await connectedPair(await listen(config), config, ringBytes);
    streams.push(connected.sender, connected.receiver);
    return connected;
  }

  it('hands the payloads over in the order written, each at the position the sender returned, round the ring many times', async () => {
    const { sender, receiver } = await pair();
    // 12 MiB through a 1 MiB ring: the receiver stops reading while the ring is full and goes on as payloads are taken.
    const payloads = Array.from({ length: 48 }, (_, i) => randomBytes([RING - 1, 1, 200_000, 65_536][i % 4]!));
    const locators = payloads.map((payload) => sender.write([payload.subarray(0, 10), payload.subarray(10)], payload.length));
    let position = 0;
    for (const [i, payload] of payloads.entries()) {
      expect(locators[i], `payload ${i}`).to.equal(position);
      position = (position + payload.length) >>> 0;
      const got = await takeWhenIn(receiver, locators[i]!, payload.length);
      expect(got.outcome, `payload ${i}`).to.equal('ok');
      expect(got.data.equals(payload), `payload ${i}`).to.equal(true);
    }
  });

  it('takes payloads larger than the ring whole, in order among ring-sized ones, whatever of them had reached the ring', async () => {
    const { sender, receiver } = await pair();
    const sizes = [100_000, 3 * RING + 5, 200_000, RING, 5 * RING / 2, RING - 1, 65_536, 2 * RING];
    const payloads = sizes.map((size) => randomBytes(size));
    const locators = payloads.map((payload) => sender.write([payload], payload.length));
    for (const [i, payload] of payloads.entries()) {
      // Now and then the link is slow to ask: the ring fills (and stops reading) with the next payload's first bytes.
      if (i % 3 === 1) await new Promise((resolve) => setTimeout(resolve, 50));
      const got = await takeWhenIn(receiver, locators[i]!, payload.length);
      expect(got.outcome, `payload ${i} (${payload.length} bytes)`).to.equal('ok');
      expect(got.data.equals(payload), `payload ${i} (${payload.length} bytes)`).to.equal(true);
    }
    expect(take(receiver, (locators.at(-1)! + payloads.at(-1)!.length) >>> 0, 1).outcome).to.equal('wait');
  });

  it('answers wait until the payload is all in, then ready(), then the bytes; misplaced for a position the stream is not at or a payload over max_msg_sz', async () => {
    const { sender, receiver, events } = await pair();
    const payload = randomBytes(600_000);
    expect(take(receiver, 0, payload.length).outcome).to.equal('wait');
    sender.write([payload], payload.length);
    await eventually('ready()', () => events.ready === 1);
    expect(take(receiver, 5, 10).outcome).to.equal('misplaced');
    // Larger than any message (max_msg_sz): refused before a byte of room is set aside for it.
    expect(take(receiver, 0, 2 ** 30 + 1).outcome).to.equal('misplaced');
    const got = take(receiver, 0, payload.length);
    expect(got.outcome).to.equal('ok');
    expect(got.data.equals(payload)).to.equal(true);
    const owned = randomBytes(4096);
    expect(sender.write([], owned.length, owned)).to.equal(600_000);
    expect((await takeWhenIn(receiver, 600_000, 4096)).data.equals(owned)).to.equal(true);
  });

  it('closes a connection whose token it never offered, one cancelled, and one whose receiving end sends bytes; tells each end when the other goes', async () => {
    const listener = await listen();
    const stray = await BulkReceiver.dial(HOST, listener.port, randomBytes(32), RING, PLAINTEXT, WIRE_TLS_NAME, 5000);
    expect(await closedReason(stray)).to.be.a('string');

    const cancelled: BulkOffer = listener.offer();
    cancelled.cancel();
    expect(await cancelled.sender).to.equal(undefined);
    const late = await BulkReceiver.dial(HOST, listener.port, cancelled.token, RING, PLAINTEXT, WIRE_TLS_NAME, 5000);
    expect(await closedReason(late)).to.be.a('string');

    const talker = listener.offer();
    const raw = net.connect(listener.port, HOST);
    await new Promise<void>((resolve) => raw.once('connect', resolve));
    raw.write(talker.token);
    const sender = (await talker.sender)!;
    const senderGone = closedReason(sender);
    raw.write('not a receiver');
    expect(await senderGone).to.match(/protocol error/);
    raw.destroy();

    const { sender: near, receiver, events } = await connectedPair(listener);
    streams.push(receiver);
    near.destroy();
    await eventually('closed()', () => events.closed.length === 1);
  });

  it('refuses to dial a port nobody serves with ECONNREFUSED, and a ring out of bounds with EINVAL', async () => {
    const listener = await listen();
    const port = listener.port;
    await listener.close();
    listeners.splice(0);
    const error = await BulkReceiver.dial(HOST, port, randomBytes(32), RING, PLAINTEXT, WIRE_TLS_NAME, 5000).catch((e: unknown) => e);
    expect((error as NodeJS.ErrnoException).code).to.equal('ECONNREFUSED');
    const tiny = await BulkReceiver.dial(HOST, port, randomBytes(32), 4096, PLAINTEXT, WIRE_TLS_NAME, 5000).catch((e: unknown) => e);
    expect(errnoOf(tiny)).to.equal('EINVAL');
  });

  describe('with TLS', () => {
    let dir: string;
    let service: TlsConfig;
    before(function () {
      dir = fs.mkdtempSync(path.join(os.tmpdir(), 'p2p-bulk-certs-'));
      try {
        execFileSync('bash', [path.resolve(__dirname, '..', '..', '..', '..', 'deploy', 'scripts', 'make-dev-certs.sh'), dir], { stdio: 'ignore' });
      } catch {
        console.warn('      no openssl on this machine: the bulk stream TLS tests are skipped');
        this.skip();
      }
      service = loadTlsConfig({ P2P_TLS_CA: path.join(dir, 'ca.crt'), P2P_TLS_CERT: path.join(dir, 'service.crt'), P2P_TLS_KEY: path.join(dir, 'service.key') });
    });
    after(() => fs.rmSync(dir, { recursive: true, force: true }));

    it('carries payloads over mutual TLS, the server checked as the wire name, larger than the ring too', async () => {
      const { sender, receiver } = await pair(service, 4 * MiB);
      const payloads = [randomBytes(3 * MiB), randomBytes(3 * MiB), randomBytes(9 * MiB), randomBytes(MiB)];
      const locators = payloads.map((payload) => sender.write([payload], payload.length));
      for (const [i, payload] of payloads.entries()) expect((await takeWhenIn(receiver, locators[i]!, payload.length)).data.equals(payload)).to.equal(true);
    });

    it('refuses a connector without a certificate, and one that dials plaintext', async () => {
      const listener = await listen(service);
      const offer = listener.offer();
      const noCertificate = await BulkReceiver.dial(HOST, offer.port, offer.token, RING, { ca: service.ca }, WIRE_TLS_NAME, 5000).then(
        (receiver) => {
          streams.push(receiver);
          return closedReason(receiver);
        },
        (error: unknown) => String(error),
      );
      expect(noCertificate).to.be.a('string');
      const plaintext = await BulkReceiver.dial(HOST, offer.port, offer.token, RING, PLAINTEXT, WIRE_TLS_NAME, 5000);
      expect(await closedReason(plaintext)).to.be.a('string');
      // The offer was never redeemed.
      offer.cancel();
      expect(await offer.sender).to.equal(undefined);
    });

    it('refuses a server whose certificate does not name the wire', async () => {
      const listener = await listen(service);
      const offer = listener.offer();
      const error = await BulkReceiver.dial(HOST, offer.port, offer.token, RING, service, 'elsewhere.example', 5000).catch((e: unknown) => e);
      expect(error).to.be.an('error');
      offer.cancel();
    });
  });
});
