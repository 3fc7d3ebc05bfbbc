/**
 * An exporting service for the fault tests (a vfio-pci stand-in), run as its
 * own Node process so that it can die for real (SIGKILL).
 *
 *   node exporter.js <registry address> <shm dir> <owner name>
 *
 * Registers an OwnerSession backed by a SharedMemoryExporter and prints
 * `{"event":"ready","incarnation":"..."}`. Then one command per stdin line,
 * each answered by one JSON line `{"ok":true,...}` or `{"ok":false,"errno":...}`:
 *
 *   export <handle> <size> <pid> <byte>   a region of `size` bytes filled with `byte`,
 *                                         exported (cpu_access) into the fd table of `pid`
 */
import * as readline from 'node:readline';
import { OwnerSession, SharedMemoryExporter } from '@p2p/dmabuf-client';
import { ErrnoError } from '@p2p/errno';
import { SegmentStore, SharedMemory } from '@p2p/shm';
import { platformSecretsOf } from '@p2p/testing';

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
  if (address === undefined || shmDir === undefined || name === undefined) throw new Error('usage: exporter.js <address> <shm dir> <owner name>');
  const store = new SegmentStore({ dir: shmDir });
  const exporter = new SharedMemoryExporter(store);
  const owner = await OwnerSession.open(address, { credential: platformSecretsOf(shmDir).platformToken, name, shmDir, ops: exporter });

  const run = async (words: string[]): Promise<object> => {
    const [command, handle, size, pid, byte] = words;
    if (command !== 'export' || handle === undefined) throw new ErrnoError('EINVAL', `unknown command ${words.join(' ')}`);
    const bytes = int(size, 'size');
    const memory = SharedMemory.create(store, handle, bytes);
    memory.write(0, Buffer.alloc(bytes, int(byte, 'byte')));
    exporter.addBuffer(handle, memory, 0xf000_0000n);
    const exported = await owner.exportDmaBuf({ pid: int(pid, 'pid'), size: bytes, handle, cpuAccess: true });
    return { bufferId: exported.bufferId, fd: exported.fd, segments: memory.extents(0, bytes).map((e) => e.segment) };
  };

  say({ event: 'ready', incarnation: owner.incarnation });
  let queue = Promise.resolve();
  const lines = readline.createInterface({ input: process.stdin });
  lines.on('close', () => process.exit(0));
  lines.on('line', (line) => {
    queue = queue.then(async () => {
      try {
        say({ ok: true, ...(await run(line.trim().split(/\s+/))) });
      } catch (error) {
        say({ ok: false, errno: error instanceof ErrnoError ? error.errno : 'EIO', message: error instanceof Error ? error.message : String(error) });
      }
    });
  });
}

main().catch((error: unknown) => {
  process.stderr.write(`exporter failed: ${error instanceof Error ? (error.stack ?? error.message) : String(error)}\n`);
  process.exit(1);
});
