/**
 * A process that maps memory for its devices' DMA through iommufd (a DPDK
 * or SPDK application, say), run as its own Node process so that it can be
 * killed (SIGKILL) or frozen (SIGSTOP) for real.
 *
 *   node iommufd-user.js <registry address> <vfio-pci address> <shm dir> <name>
 *
 * Opens a RegistrySession, opens /dev/iommu and allocates an IOAS, and
 * prints `{"event":"ready","pid":N,"iommufd":M,"ioasId":K}`. Then one command
 * per stdin line, each answered by one JSON line `{"ok":true,...}` or
 * `{"ok":false,"errno":...}`. Numbers are decimal or 0x-hex.
 *
 *   open <bdf>                       OpenDevice; answers `fd`
 *   command <device fd> <value>      writes PCI_COMMAND through the config region
 *   read-command <device fd>         reads PCI_COMMAND through the config region; answers `value`
 *   export <device fd> <length>      VFIO_DEVICE_FEATURE_DMA_BUF of BAR2 [0, length); answers `fd`
 *   receive <token>                  ReceiveFd (SCM_RIGHTS); answers `fd`
 *   send <fd> <pid>                  SendFd to another process; answers `token`
 *   close <fd>                       CloseFd
 *   heap <length> <seed>             a heap buffer filled with pattern(length, seed), mmapped;
 *                                    answers `fd`, `bufferId`, `addr`
 *   map <addr> <length> <iova>       IOMMU_IOAS_MAP (FIXED_IOVA, READABLE | WRITEABLE)
 *   mapfile <fd> <length> <iova>     IOMMU_IOAS_MAP_FILE (FIXED_IOVA, READABLE | WRITEABLE)
 *   unmap <iova> <length>            IOMMU_IOAS_UNMAP; answers `length`
 *   attach <device fd>               VFIO_DEVICE_BIND_IOMMUFD, then ATTACH_IOMMUFD_PT to the IOAS; answers `hwptId`
 *   import <fd> <bdf>                a dynamic, peer-to-peer import of the dma-buf by the function <bdf>,
 *                                    mapped; acks every move_notify (when it can run)
 *   dma <accel fd> <src> <dst> <len> one transfer of accel0's DMA engine; answers `status`, `error`
 *   exit                             close the session and exit 0
 */
import * as readline from 'node:readline';
import { RegistrySession } from '@p2p/dmabuf-client';
import { ErrnoError } from '@p2p/errno';
import { DMA_SRC_IOVA, DMA_STATUS } from '@p2p/pci-emu';
import { iommufd, vfio } from '@p2p/proto';
import { connectPeer } from '@p2p/rpc';
import { errnoOf } from '@p2p/status';
import { iommufdUapi, O_RDWR, pciRegs, vfioUapi } from '@p2p/vfio-pci';
import { doorbellRegisters } from '@p2p/user-driver';
import { pattern } from '../../harness/accel-dma';

const CMB_BAR = 2;
const RW = iommufdUapi.IOMMU_IOAS_MAP_FIXED_IOVA | iommufdUapi.IOMMU_IOAS_MAP_READABLE | iommufdUapi.IOMMU_IOAS_MAP_WRITEABLE;

function say(message: object): void {
  process.stdout.write(`${JSON.stringify(message, (_key, value: unknown) => (typeof value === 'bigint' ? value.toString() : value))}\n`);
}

function int(text: string | undefined, what: string): number {
  const value = Number(text);
  if (text === undefined || !Number.isSafeInteger(value) || value < 0) throw new ErrnoError('EINVAL', `bad ${what}: ${String(text)}`);
  return value;
}

function u64(text: string | undefined, what: string): bigint {
  try {
    return BigInt(text ?? '');
  } catch {
    throw new ErrnoError('EINVAL', `bad ${what}: ${String(text)}`);
  }
}

async function main(): Promise<void> {
  const [registryAddress, vfioAddress, shmDir, name] = process.argv.slice(2);
  if (registryAddress === undefined || vfioAddress === undefined || shmDir === undefined || name === undefined) {
    throw new Error('usage: iommufd-user.js <registry address> <vfio-pci address> <shm dir> <name>');
  }
  const session = await RegistrySession.open(registryAddress, { name, shmDir });
  session.on('error', (error) => process.stderr.write(`session error: ${String(error)}\n`));
  session.on('lost', (error) => process.stderr.write(`session lost: ${error.message}\n`));
  const as = { token: session.credential };
  const device = connectPeer(vfio.VfioPciServiceDefinition, vfioAddress, { name: 'vfio-pci', ...as }).client;
  const deviceIommufd = connectPeer(vfio.VfioDeviceIommufdServiceDefinition, vfioAddress, { name: 'vfio-pci', ...as }).client;
  const dev = connectPeer(iommufd.IommufdServiceDefinition, vfioAddress, { name: 'vfio-pci', ...as }).client;
  const pid = session.pid;
  const { fd: ictx } = await dev.openIommufd({ pid });
  const { outIoasId: ioasId } = await dev.ioasAlloc({ pid, fd: ictx, flags: 0 });
  const bound = new Set<number>();

  const run = async (words: string[]): Promise<object> => {
    const [command, ...args] = words;
    switch (command) {
      case 'open':
        return { fd: (await device.openDevice({ pid, bdf: args[0] ?? '' })).fd };
      case 'command': {
        const data = Buffer.alloc(2);
        data.writeUInt16LE(int(args[1], 'value'));
        const index = vfioUapi.VFIO_PCI_CONFIG_REGION_INDEX;
        await device.regionWrite({ pid, deviceFd: int(args[0], 'device fd'), index, offset: BigInt(pciRegs.PCI_COMMAND), data });
        return {};
      }
      case 'read-command': {
        const index = vfioUapi.VFIO_PCI_CONFIG_REGION_INDEX;
        const { data } = await device.regionRead({ pid, deviceFd: int(args[0], 'device fd'), index, offset: BigInt(pciRegs.PCI_COMMAND), count: 2 });
        return { value: data.readUInt16LE(0) };
      }
      case 'export': {
        const { fd } = await device.deviceFeature({
          pid,
          deviceFd: int(args[0], 'device fd'),
          argsz: 0,
          flags: vfioUapi.VFIO_DEVICE_FEATURE_GET | vfioUapi.VFIO_DEVICE_FEATURE_DMA_BUF,
          payload: { $case: 'dmaBuf', value: { regionIndex: CMB_BAR, openFlags: O_RDWR, flags: 0, dmaRanges: [{ offset: 0n, length: u64(args[1], 'length') }] } },
        });
        return { fd };
      }
      case 'receive':
        return { fd: await session.receiveFd(args[0] ?? '') };
      case 'send':
        return { token: await session.sendFd(int(args[0], 'fd'), int(args[1], 'pid')) };
      case 'close':
        await session.closeFd(int(args[0], 'fd'));
        return {};
      case 'heap': {
        const length = int(args[0], 'length');
        const { fd, bufferId } = await session.heapAllocate(length);
        await session.cpuWrite(fd, 0, pattern(length, int(args[1], 'seed')));
        const { addr } = await session.mmapFd(fd, 0, length);
        return { fd, bufferId, addr };
      }
      case 'map': {
        const { iova } = await dev.ioasMap({ pid, fd: ictx, flags: RW, ioasId, reserved: 0, userVa: u64(args[0], 'addr'), length: u64(args[1], 'length'), iova: u64(args[2], 'iova') });
        return { iova };
      }
      case 'mapfile': {
        const { iova } = await dev.ioasMapFile({ pid, fd: ictx, flags: RW, ioasId, mapFd: int(args[0], 'fd'), start: 0n, length: u64(args[1], 'length'), iova: u64(args[2], 'iova') });
        return { iova };
      }
      case 'unmap':
        return { length: (await dev.ioasUnmap({ pid, fd: ictx, ioasId, iova: u64(args[0], 'iova'), length: u64(args[1], 'length') })).length };
      case 'attach': {
        const deviceFd = int(args[0], 'device fd');
        if (!bound.has(deviceFd)) {
          await deviceIommufd.bindIommufd({ pid, deviceFd, flags: 0, iommufd: ictx });
          bound.add(deviceFd);
        }
        return { hwptId: (await deviceIommufd.attachIommufdPt({ pid, deviceFd, flags: 0, ptId: ioasId, pasid: 0 })).ptId };
      }
      case 'import': {
        const importer = await session.importDmaBuf({ fd: int(args[0], 'fd'), importerBdf: args[1] ?? '' });
        await importer.map();
        return { attachmentId: importer.attachmentId, bufferId: importer.bufferId };
      }
      case 'dma': {
        const deviceFd = int(args[0], 'accel fd');
        const index = vfioUapi.VFIO_PCI_BAR0_REGION_INDEX;
        const data = doorbellRegisters(u64(args[1], 'src'), u64(args[2], 'dst'), int(args[3], 'length'));
        await device.regionWrite({ pid, deviceFd, index, offset: BigInt(DMA_SRC_IOVA), data });
        const status = (await device.regionRead({ pid, deviceFd, index, offset: BigInt(DMA_STATUS), count: 8 })).data;
        return { status: status.readUInt32LE(0), error: status.readUInt32LE(4) };
      }
      case 'exit':
        await session.close();
        say({ ok: true });
        process.exit(0);
      default:
        throw new ErrnoError('EINVAL', `unknown command ${String(command)}`);
    }
  };

  say({ event: 'ready', pid, iommufd: ictx, ioasId });
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
  process.stderr.write(`iommufd-user failed: ${error instanceof Error ? (error.stack ?? error.message) : String(error)}\n`);
  process.exit(1);
});
