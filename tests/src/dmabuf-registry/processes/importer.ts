/**
 * An importing process for the fault tests, run as its own Node process so
 * that it can be killed (SIGKILL) or frozen (SIGSTOP) for real.
 *
 *   node importer.js <registry address> <shm dir> <name>
 *
 * Opens a RegistrySession and prints `{"event":"ready","pid":N,...}`. Then it
 * obeys one command per stdin line, in order, and answers each with exactly
 * one JSON line `{"ok":true,...}` or `{"ok":false,"errno":"E...","message":"..."}`:
 *
 *   attach <token> [bdf]           receiveFd(token), importDmaBuf (dynamic; a CPU importer, or the
 *                                  PCI function `bdf`, as a driver attaches its device), map;
 *                                  also keeps the device's own views of the mapped segments (see dma)
 *   write <offset> <byte> <length> write `length` copies of `byte` through the importer (the library)
 *   dma <offset> <byte> <length>   write through the views taken at attach: the device's DMA, which
 *                                  knows nothing of move_notify (what a frozen driver leaves running)
 *   read <offset> <length>         read through the importer; answers `data` in hex
 *   state                          the importer's state and whether it is mapped
 *   exit                           close the session and exit 0
 *
 * Bytes are decimal or 0x-hex. Background errors of the session go to stderr.
 */
import * as readline from 'node:readline';
import { type DmaBufImporter, RegistrySession } from '@p2p/dmabuf-client';
import { ErrnoError } from '@p2p/errno';
import { SegmentStore } from '@p2p/shm';
import { errnoOf } from '@p2p/status';

interface DeviceView {
  readonly offset: number;
  readonly view: Buffer;
}

function say(message: object): void {
  process.stdout.write(`${JSON.stringify(message, (_key, value: unknown) => (typeof value === 'bigint' ? value.toString() : value))}\n`);
}

function int(text: string | undefined, what: string): number {
  const value = Number(text);
  if (text === undefined || !Number.isSafeInteger(value) || value < 0) throw new ErrnoError('EINVAL', `bad ${what}: ${String(text)}`);
  return value;
}

async function main(): Promise<void> {
  const [address, shmDir, name] = process.argv.slice(2);
  if (address === undefined || shmDir === undefined || name === undefined) throw new Error('usage: importer.js <address> <shm dir> <name>');
  const session = await RegistrySession.open(address, { name, shmDir });
  session.on('error', (error) => process.stderr.write(`session error: ${String(error)}\n`));
  session.on('lost', (error) => process.stderr.write(`session lost: ${error.message}\n`));
  const store = new SegmentStore({ dir: shmDir });
  let importer: DmaBufImporter | undefined;
  let device: DeviceView[] = [];

  const need = (): DmaBufImporter => {
    if (importer === undefined) throw new ErrnoError('EINVAL', 'no attach yet');
    return importer;
  };

  const run = async (words: string[]): Promise<object> => {
    const [command, ...args] = words;
    switch (command) {
      case 'attach': {
        const fd = await session.receiveFd(args[0] ?? '');
        importer = await session.importDmaBuf({ fd, importerBdf: args[1] ?? '' });
        const info = await importer.map();
        let offset = 0;
        device = info.extents.map((extent) => {
          const segment = store.open(extent.segment);
          const view = segment.view(Number(extent.segmentOffset), Number(extent.length));
          // The view outlives the descriptor: mmap-io's mapping stays until collected.
          segment.close();
          const piece = { offset, view };
          offset += Number(extent.length);
          return piece;
        });
        return { fd, attachmentId: importer.attachmentId, bufferId: importer.bufferId, generation: info.generation, segments: info.extents.map((e) => e.segment) };
      }
      case 'write': {
        await need().write(int(args[0], 'offset'), Buffer.alloc(int(args[2], 'length'), int(args[1], 'byte')));
        return {};
      }
      case 'dma': {
        const offset = int(args[0], 'offset');
        const data = Buffer.alloc(int(args[2], 'length'), int(args[1], 'byte'));
        for (const piece of device) {
          const from = Math.max(offset, piece.offset);
          const to = Math.min(offset + data.length, piece.offset + piece.view.length);
          if (from < to) data.copy(piece.view, from - piece.offset, from - offset, to - offset);
        }
        return {};
      }
      case 'read':
        return { data: (await need().read(int(args[0], 'offset'), int(args[1], 'length'))).toString('hex') };
      case 'state':
        return { state: need().state, mapped: need().mapped, session: session.state };
      case 'exit':
        await session.close();
        say({ ok: true });
        process.exit(0);
      default:
        throw new ErrnoError('EINVAL', `unknown command ${String(command)}`);
    }
  };

  say({ event: 'ready', pid: session.pid, incarnation: session.incarnation });
  let queue = Promise.resolve();
  const lines = readline.createInterface({ input: process.stdin });
  // The test went away: so does this process.
  lines.on('close', () => process.exit(0));
  lines.on('line', (line) => {
    queue = queue.then(async () => {
      try {
        say({ ok: true, ...(await run(line.trim().split(/\s+/))) });
      } catch (error) {
        const name = error instanceof ErrnoError ? error.errno : (errnoOf(error) ?? 'EIO');
        say({ ok: false, errno: name, message: error instanceof Error ? error.message : String(error) });
      }
    });
  });
}

main().catch((error: unknown) => {
  process.stderr.write(`importer failed: ${error instanceof Error ? (error.stack ?? error.message) : String(error)}\n`);
  process.exit(1);
});
