/**
 * A user-space driver process for the vfio-pci fault tests (SPDK, say), run as
 * its own Node process so that it can die for real (SIGKILL).
 *
 *   node device-owner.js <registry address> <vfio-pci address> <shm dir> <name> <bdf>
 *
 * Opens a RegistrySession, opens the device <bdf> through vfio-pci and prints
 * `{"event":"ready","pid":N,"deviceFd":M}`. Then one command per stdin line,
 * each answered by one JSON line `{"ok":true,...}` or `{"ok":false,"errno":...}`:
 *
 *   export <region> <offset> <length>   VFIO_DEVICE_FEATURE GET|DMA_BUF of one range; answers `fd`
 *   exit                                close the session and exit 0
 */
import * as readline from 'node:readline';
import { credentials, type ServiceError } from '@grpc/grpc-js';
import { RegistrySession } from '@p2p/dmabuf-client';
import { ErrnoError } from '@p2p/errno';
import { vfio } from '@p2p/proto';
import { errnoOf } from '@p2p/status';

const FEATURE_DMA_BUF = 11;
const GET = 1 << 16;
const O_RDWR = 2;

function say(message: object): void {
  process.stdout.write(`${JSON.stringify(message, (_key, value: unknown) => (typeof value === 'bigint' ? value.toString() : value))}\n`);
}

function int(text: string | undefined, what: string): number {
  const value = Number(text);
  if (text === undefined || !Number.isSafeInteger(value) || value < 0) throw new ErrnoError('EINVAL', `bad ${what}: ${String(text)}`);
  return value;
}

function unary<Res>(start: (callback: (error: ServiceError | null, response: Res) => void) => unknown): Promise<Res> {
  return new Promise((resolve, reject) => {
    start((error, response) => (error ? reject(error) : resolve(response)));
  });
}

async function main(): Promise<void> {
  const [registryAddress, vfioAddress, shmDir, name, bdf] = process.argv.slice(2);
  if (registryAddress === undefined || vfioAddress === undefined || shmDir === undefined || name === undefined || bdf === undefined) {
    throw new Error('usage: device-owner.js <registry address> <vfio-pci address> <shm dir> <name> <bdf>');
  }
  const session = await RegistrySession.open(registryAddress, { name, shmDir });
  session.on('error', (error) => process.stderr.write(`session error: ${String(error)}\n`));
  session.on('lost', (error) => process.stderr.write(`session lost: ${error.message}\n`));
  const client = new vfio.VfioPciServiceClient(vfioAddress, credentials.createInsecure(), { interceptors: [session.interceptor] });
  const { fd: deviceFd } = await unary<vfio.OpenDeviceResponse>((cb) => client.openDevice({ pid: session.pid, bdf }, cb));

  const run = async (words: string[]): Promise<object> => {
    const [command, ...args] = words;
    switch (command) {
      case 'export': {
        const regionIndex = int(args[0], 'region');
        const offset = BigInt(int(args[1], 'offset'));
        const length = BigInt(int(args[2], 'length'));
        const { fd } = await unary<vfio.DeviceFeatureResponse>((cb) =>
          client.deviceFeature(
            {
              pid: session.pid,
              deviceFd,
              argsz: 0,
              flags: GET | FEATURE_DMA_BUF,
              payload: { $case: 'dmaBuf', value: { regionIndex, openFlags: O_RDWR, flags: 0, dmaRanges: [{ offset, length }] } },
            },
            cb,
          ),
        );
        return { fd };
      }
      case 'exit':
        client.close();
        await session.close();
        say({ ok: true });
        process.exit(0);
      default:
        throw new ErrnoError('EINVAL', `unknown command ${String(command)}`);
    }
  };

  say({ event: 'ready', pid: session.pid, deviceFd });
  let queue = Promise.resolve();
  const lines = readline.createInterface({ input: process.stdin });
  // The test went away: so does this process.
  lines.on('close', () => process.exit(0));
  lines.on('line', (line) => {
    queue = queue.then(async () => {
      try {
        say({ ok: true, ...(await run(line.trim().split(/\s+/))) });
      } catch (error) {
        const errno = error instanceof ErrnoError ? error.errno : (errnoOf(error) ?? 'EIO');
        say({ ok: false, errno, message: error instanceof Error ? error.message : String(error) });
      }
    });
  });
}

main().catch((error: unknown) => {
  process.stderr.write(`device-owner failed: ${error instanceof Error ? (error.stack ?? error.message) : String(error)}\n`);
  process.exit(1);
});
