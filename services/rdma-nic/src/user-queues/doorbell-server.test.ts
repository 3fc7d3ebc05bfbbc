import * as fs from 'node:fs';
import * as net from 'node:net';
import * as os from 'node:os';
import * as path from 'node:path';
import { expect } from 'chai';
import { userQueues } from '@p2p/verbs';
import { DoorbellServer } from './doorbell-server';
import { UserContext } from './user-context';

const once = (socket: net.Socket, event: string): Promise<void> => new Promise((resolve) => socket.once(event, () => resolve()));

describe('the doorbell socket', () => {
  let dir: string;
  let server: DoorbellServer | undefined;

  beforeEach(() => {
    dir = fs.mkdtempSync(path.join(os.tmpdir(), 'doorbell-'));
  });

  afterEach(async () => {
    await server?.close();
    server = undefined;
    fs.rmSync(dir, { recursive: true, force: true });
  });

  it('refuses a path sun_path cannot hold (EINVAL, as bind() does) rather than bind a truncated one', async () => {
    const long = path.join(dir, `${'x'.repeat(120)}.sock`);
    const error = await DoorbellServer.listen(long).then(() => undefined, (e: unknown) => e as { errno?: string });
    expect(error?.errno).to.equal('EINVAL');
    expect(fs.readdirSync(dir)).to.deep.equal([]);
  });

  it('wakes the context a key names, closes a connection whose key names none, and sends completion events', async () => {
    server = await DoorbellServer.listen(path.join(dir, 'nic.sock'));
    const page = new Uint8Array(new ArrayBuffer(userQueues.DOORBELL_PAGE_BYTES));
    const asleep = new userQueues.DoorbellWord(page, userQueues.DB_NIC_ASLEEP);
    const context = new UserContext(page);
    server.add(context);
    expect([context.sleeping, asleep.load()]).to.deep.equal([true, 1]);

    const stranger = net.connect(server.path);
    stranger.write(Buffer.alloc(userQueues.WAKE_KEY_BYTES, 7));
    await once(stranger, 'close');

    let scans = 0;
    const scan = context.scan.bind(context);
    context.scan = (): boolean => {
      scans++;
      return scan();
    };
    const poster = net.connect(server.path);
    const events: Buffer[] = [];
    poster.on('data', (chunk: Buffer) => events.push(chunk));
    poster.write(Buffer.concat([context.key, Buffer.from([userQueues.WAKE_BYTE])]));
    for (let i = 0; i < 100 && scans === 0; i++) await new Promise((resolve) => setTimeout(resolve, 5));
    expect(scans, 'doorbell records read after the wake-up').to.be.above(0);
    // Idle past IDLE_BEFORE_SLEEP_MS, the NIC sleeps on it again and says so in the page.
    for (let i = 0; i < 100 && !context.sleeping; i++) await new Promise((resolve) => setTimeout(resolve, 5));
    expect([context.sleeping, asleep.load()]).to.deep.equal([true, 1]);

    context.cqEvent(42);
    for (let i = 0; i < 100 && events.length === 0; i++) await new Promise((resolve) => setTimeout(resolve, 5));
    expect(Buffer.concat(events)).to.deep.equal(Buffer.from([userQueues.CQ_EVENT_TAG, 42, 0, 0, 0]));
    poster.destroy();
  });
});
