import { execFileSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { expect } from 'chai';
import { loadTlsConfig, PLAINTEXT, type TlsConfig } from '@p2p/auth';
import { errnoOf } from '@p2p/status';
import { eventually } from '@p2p/testing';
import { BulkChannel, BulkListener, type BulkOffer } from './bulk-stream';
import { WIRE_TLS_NAME } from './wire-options';

const HOST = '127.0.0.1';
const MiB = 1024 * 1024;

/** A connected pair: the connector's end and the listener's, both bound, with what each side's link was told. */
async function connectedPair(listener: BulkListener, config: TlsConfig = PLAINTEXT) {
  const offer = listener.offer();
  const near = await BulkChannel.connect(HOST, offer.port, offer.token, config, WIRE_TLS_NAME, 5000);
  const far = await offer.channel;
  expect(far).to.not.equal(undefined);
  const events = { ready: 0, closed: [] as string[] };
  far!.bind({ ready: () => events.ready++, closed: (reason) => events.closed.push(reason) });
  near.bind({ ready: () => undefined, closed: () => undefined });
  return { near, far: far!, events };
}

function take(channel: BulkChannel, locator: number, bytes: number): { outcome: string; data: Buffer } {
  const views: Uint8Array[] = [];
  const outcome = channel.take(locator, bytes, views);
  return { outcome, data: Buffer.concat(views) };
}

/** take() once the payload is all in (polled), or its 'wait' after 5 s. */
async function takeWhenIn(channel: BulkChannel, locator: number, bytes: number): Promise<{ outcome: string; data: Buffer }> {
  let got = take(channel, locator, bytes);
  for (const deadline = Date.now() + 5000; got.outcome === 'wait' && Date.now() < deadline; got = take(channel, locator, bytes)) {
    await new Promise((resolve) => setTimeout(resolve, 5));
  }
  return got;
}

describe('the bulk stream between NICs of different hosts', function () {
  this.timeout(20_000);
  const listeners: BulkListener[] = [];
  const channels: BulkChannel[] = [];
  afterEach(async () => {
    for (const channel of channels.splice(0)) channel.destroy();
    await Promise.all(listeners.splice(0).map((listener) => listener.close()));
  });
  async function listen(config: TlsConfig = PLAINTEXT): Promise<BulkListener> {
    const listener = await BulkListener.start(HOST, 0, config, undefined);
    listeners.push(listener);
    return listener;
  }

  it('hands the payloads over in the order written, each at the position the writer returned, across chunk boundaries', async () => {
    const { near, far } = await connectedPair(await listen());
    channels.push(near, far);
    const payloads = [randomBytes(3 * MiB + 7), randomBytes(1), randomBytes(200_000)];
    const locators = payloads.map((payload) => near.write([payload.subarray(0, 10), payload.subarray(10)], payload.length));
    expect(locators).to.deep.equal([0, 3 * MiB + 7, 3 * MiB + 8]);
    for (const [i, payload] of payloads.entries()) {
      const got = await takeWhenIn(far, locators[i], payload.length);
      expect(got.outcome, `payload ${i}`).to.equal('ok');
      expect(got.data.equals(payload), `payload ${i}`).to.equal(true);
    }
  });

  it('answers wait until the payload is all in, then ready(), then the bytes; misplaced for a position the stream is not at', async () => {
    const { near, far, events } = await connectedPair(await listen());
    channels.push(near, far);
    const payload = randomBytes(2 * MiB);
    expect(take(far, 0, payload.length).outcome).to.equal('wait');
    near.write([payload], payload.length);
    await eventually('ready()', () => events.ready === 1);
    expect(take(far, 5, 10).outcome).to.equal('misplaced');
    const got = take(far, 0, payload.length);
    expect(got.outcome).to.equal('ok');
    expect(got.data.equals(payload)).to.equal(true);
    const owned = randomBytes(4096);
    expect(near.write([], owned.length, owned)).to.equal(2 * MiB);
    expect((await takeWhenIn(far, 2 * MiB, 4096)).data.equals(owned)).to.equal(true);
  });

  it('takes a payload larger than its buffering bound (it reads on while a packet waits for more)', async () => {
    const { near, far, events } = await connectedPair(await listen());
    channels.push(near, far);
    const payload = randomBytes(40 * MiB);
    near.write([payload], payload.length);
    expect(take(far, 0, payload.length).outcome).to.equal('wait');
    await eventually('ready()', () => events.ready === 1, 10_000);
    expect(take(far, 0, payload.length).data.equals(payload)).to.equal(true);
  });

  it('closes a connection whose token it never offered, or one cancelled, and tells the link when its stream goes', async () => {
    const listener = await listen();
    const stray = await BulkChannel.connect(HOST, listener.port, randomBytes(32), PLAINTEXT, WIRE_TLS_NAME, 5000);
    const strayClosed: string[] = [];
    stray.bind({ ready: () => undefined, closed: (reason) => strayClosed.push(reason) });
    await eventually('the stray connection closed', () => strayClosed.length === 1);

    const cancelled: BulkOffer = listener.offer();
    cancelled.cancel();
    expect(await cancelled.channel).to.equal(undefined);
    const late = await BulkChannel.connect(HOST, listener.port, cancelled.token, PLAINTEXT, WIRE_TLS_NAME, 5000);
    const lateClosed: string[] = [];
    late.bind({ ready: () => undefined, closed: (reason) => lateClosed.push(reason) });
    await eventually('the late connection closed', () => lateClosed.length === 1);

    const { near, far, events } = await connectedPair(listener);
    channels.push(far);
    near.destroy();
    await eventually('closed()', () => events.closed.length === 1);
  });

  it('refuses to dial a port nobody serves with ECONNREFUSED', async () => {
    const listener = await listen();
    const port = listener.port;
    await listener.close();
    listeners.splice(0);
    const error = await BulkChannel.connect(HOST, port, randomBytes(32), PLAINTEXT, WIRE_TLS_NAME, 5000).catch((e: unknown) => e);
    expect((error as NodeJS.ErrnoException).code ?? errnoOf(error)).to.equal('ECONNREFUSED');
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

    it('carries payloads over mutual TLS, the server checked as the wire name', async () => {
      const { near, far, events } = await connectedPair(await listen(service), service);
      channels.push(near, far);
      const payload = randomBytes(MiB);
      near.write([payload], payload.length);
      expect(take(far, 0, MiB).outcome).to.equal('wait');
      await eventually('ready()', () => events.ready === 1);
      expect(take(far, 0, MiB).data.equals(payload)).to.equal(true);
    });

    it('refuses a connector without a certificate, and one that dials plaintext', async () => {
      const listener = await listen(service);
      const offer = listener.offer();
      const noCertificate = await BulkChannel.connect(HOST, offer.port, offer.token, { ca: service.ca }, WIRE_TLS_NAME, 5000).then(
        (channel) =>
          new Promise<string>((resolve) => {
            channels.push(channel);
            channel.bind({ ready: () => undefined, closed: resolve });
          }),
        (error: unknown) => String(error),
      );
      expect(noCertificate).to.be.a('string');
      const plaintext = await BulkChannel.connect(HOST, offer.port, offer.token, PLAINTEXT, WIRE_TLS_NAME, 5000);
      const closed = await new Promise<string>((resolve) => plaintext.bind({ ready: () => undefined, closed: resolve }));
      expect(closed).to.be.a('string');
      // The offer was never redeemed.
      offer.cancel();
      expect(await offer.channel).to.equal(undefined);
    });

    it('refuses a server whose certificate does not name the wire', async () => {
      const listener = await listen(service);
      const offer = listener.offer();
      const error = await BulkChannel.connect(HOST, offer.port, offer.token, service, 'elsewhere.example', 5000).catch((e: unknown) => e);
      expect(error).to.be.an('error');
      offer.cancel();
    });
  });
});
