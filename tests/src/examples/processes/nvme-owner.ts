/**
 * A user-space NVMe driver process (SPDK's, say) for the NVMe fault tests,
 * run as its own Node process so that it can die for real (SIGKILL).
 *
 *   node nvme-owner.js <registry address> <vfio-pci address> <shm dir> <name>
 *
 * Opens a RegistrySession, opens nvme1 (bound to vfio-pci already) and
 * brings it up with its CMB exported (harness/nvme-cmb-target.ts), creates
 * I/O queue pair 1 in its own memory and prints
 * `{"event":"ready","pid":N,"deviceFd":M,"cmbFd":C,"blockSize":B}`. Then one
 * command per stdin line, each answered by one JSON line `{"ok":true,...}`
 * or `{"ok":false,"errno":...}`:
 *
 *   write <lba> <generation>   a Write of one self-identifying block (harness/nvme-blocks.ts)
 *   flush                      a Flush of namespace 1
 *   stream <lba>               from now on, Reads of <lba> into this process's memory, one after another
 *   exit                       close the session and exit 0
 */
import * as readline from 'node:readline';
import { RegistrySession } from '@p2p/dmabuf-client';
import { ErrnoError } from '@p2p/errno';
import { NVME_CMD_READ, NVME_CMD_WRITE } from '@p2p/pci-emu';
import { iommufd, vfio } from '@p2p/proto';
import { connectPeer } from '@p2p/rpc';
import { errnoOf } from '@p2p/status';
import { stampBlock } from '../../harness/nvme-blocks';
import { openCmbTarget } from '../../harness/nvme-cmb-target';

const NSID = 1;

function say(message: object): void {
  process.stdout.write(`${JSON.stringify(message, (_key, value: unknown) => (typeof value === 'bigint' ? value.toString() : value))}\n`);
}

function int(text: string | undefined, what: string): number {
  const value = Number(text);
  if (text === undefined || !Number.isSafeInteger(value) || value < 0) throw new ErrnoError('EINVAL', `bad ${what}: ${String(text)}`);
  return value;
}

async function main(): Promise<void> {
  const [registryAddress, vfioAddress, shmDir, name] = process.argv.slice(2);
  if (registryAddress === undefined || vfioAddress === undefined || shmDir === undefined || name === undefined) {
    throw new Error('usage: nvme-owner.js <registry address> <vfio-pci address> <shm dir> <name>');
  }
  const session = await RegistrySession.open(registryAddress, { name, shmDir });
  session.on('error', (error) => process.stderr.write(`session error: ${String(error)}\n`));
  const as = { token: session.credential };
  const clients = {
    device: connectPeer(vfio.VfioPciServiceDefinition, vfioAddress, { name: 'vfio-pci', ...as }).client,
    deviceIommufd: connectPeer(vfio.VfioDeviceIommufdServiceDefinition, vfioAddress, { name: 'vfio-pci', ...as }).client,
    iommufd: connectPeer(iommufd.IommufdServiceDefinition, vfioAddress, { name: 'vfio-pci', ...as }).client,
  };
  const target = await openCmbTarget(session, clients);
  const { driver, space } = target;
  const { blockSize } = await driver.identifyNamespace(NSID);
  const queue = await driver.createIoQueuePair(1, 64);
  const writeBuffer = await space.allocate(blockSize);
  const readBuffer = await space.allocate(blockSize);

  const run = async (words: string[]): Promise<object> => {
    const [command, ...args] = words;
    switch (command) {
      case 'write': {
        const lba = BigInt(int(args[0], 'lba'));
        stampBlock(writeBuffer.view, 0, lba, int(args[1], 'generation'), blockSize);
        await driver.io(queue, NVME_CMD_WRITE, NSID, lba, 1, writeBuffer.address, blockSize);
        return {};
      }
      case 'flush':
        await driver.flush(queue, NSID);
        return {};
      case 'stream': {
        const lba = BigInt(int(args[0], 'lba'));
        void (async () => {
          for (;;) await driver.io(queue, NVME_CMD_READ, NSID, lba, 1, readBuffer.address, blockSize);
        })().catch((error: unknown) => process.stderr.write(`stream stopped: ${String(error)}\n`));
        return {};
      }
      case 'exit':
        await session.close();
        say({ ok: true });
        process.exit(0);
      default:
        throw new ErrnoError('EINVAL', `unknown command ${String(command)}`);
    }
  };

  say({ event: 'ready', pid: session.pid, deviceFd: target.nvme.fd, cmbFd: target.cmbFd, blockSize });
  let queueOfLines = Promise.resolve();
  const lines = readline.createInterface({ input: process.stdin });
  // The test went away: so does this process.
  lines.on('close', () => process.exit(0));
  lines.on('line', (line) => {
    queueOfLines = queueOfLines.then(async () => {
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
  process.stderr.write(`nvme-owner failed: ${error instanceof Error ? (error.stack ?? error.message) : String(error)}\n`);
  process.exit(1);
});
