/**
 * SPDK's cmb_copy, as a process that owns nvme0 and nvme1 through vfio-pci
 * runs it: it brings both controllers up, enables nvme1's controller memory
 * buffer, and copies blocks from nvme0 to nvme1 through that CMB. nvme0
 * reads each chunk straight into nvme1's CMB (a peer-to-peer write through
 * the IOMMU: the CMB is a vfio-pci dma-buf mapped into the process's IOAS
 * with IOMMU_IOAS_MAP_FILE), then nvme1 writes it from its own CMB to its
 * namespace (the controller reaches its CMB directly, at the address
 * CMBMSC gave it). No byte passes through host memory. The process then
 * reads the blocks back from nvme1 into host memory and compares.
 *
 *   npm start                                   # in another terminal
 *   node tests/dist/examples/spdk-cmb-copy.js
 *
 * Addresses: DMABUF_REGISTRY_ADDRESS and VFIO_PCI_ADDRESS; the defaults are
 * npm start's. Binding both controllers to vfio-pci is the administrator's:
 * the token comes from P2P_ADMIN_TOKEN or, as npm start leaves it, from
 * `.admin-token` in the segment directory (P2P_SHM_DIR). With P2P_TLS_CA
 * (and P2P_TLS_CERT/P2P_TLS_KEY for mutual TLS) set, every call goes over TLS.
 */
import { loadTlsConfig, readAdminToken, type TlsConfig } from '@p2p/auth';
import { RegistrySession } from '@p2p/dmabuf-client';
import { NVME_CMD_READ, NVME_CMD_WRITE } from '@p2p/pci-emu';
import { iommufd, vfio } from '@p2p/proto';
import { connectPeer } from '@p2p/rpc';
import { resolveShmDir } from '@p2p/shm';
import { errnoOf } from '@p2p/status';
import { O_RDWR, vfioUapi } from '@p2p/vfio-pci';
import { NvmeDriver, VfioDmaSpace } from '@p2p/user-driver';

const NVME0 = '0000:03:00.0';
const NVME1 = '0000:08:00.0';
const CMB_BAR = 2;
const NSID = 1;
const { VFIO_DEVICE_FEATURE_GET, VFIO_DEVICE_FEATURE_DMA_BUF } = vfioUapi;

export interface SpdkCmbCopyOptions {
  readonly registry: string;
  readonly vfioPci: string;
  readonly shmDir?: string;
  readonly adminToken?: string;
  readonly tls?: TlsConfig;
  /** Bytes to copy; default 1 MiB. */
  readonly length?: number;
  /** Bytes per command; default 64 KiB (a PRP list per command). */
  readonly chunk?: number;
  readonly log?: (line: string) => void;
}

export interface SpdkCmbCopyResult {
  /** What the process wrote to nvme0. */
  readonly expected: Buffer;
  /** What it read back from nvme1 after the copy. */
  readonly copied: Buffer;
}

const hex = (value: bigint): string => `0x${value.toString(16)}`;

export async function spdkCmbCopy(options: SpdkCmbCopyOptions): Promise<SpdkCmbCopyResult> {
  const length = options.length ?? 1 << 20;
  const chunk = options.chunk ?? 64 * 1024;
  const log = options.log ?? ((): void => undefined);
  const tls = options.tls ?? loadTlsConfig();
  const app = await RegistrySession.open(options.registry, { name: 'spdk-cmb-copy', shmDir: options.shmDir, tls });
  const as = { tls, token: app.credential };
  const device = connectPeer(vfio.VfioPciServiceDefinition, options.vfioPci, { name: 'vfio-pci', ...as });
  const deviceIommufd = connectPeer(vfio.VfioDeviceIommufdServiceDefinition, options.vfioPci, { name: 'vfio-pci', ...as });
  const dev = connectPeer(iommufd.IommufdServiceDefinition, options.vfioPci, { name: 'vfio-pci', ...as });
  const admin = connectPeer(vfio.VfioPciServiceDefinition, options.vfioPci, { name: 'vfio-pci', tls, token: options.adminToken ?? readAdminToken(options.shmDir ?? resolveShmDir()) });
  try {
    for (const bdf of [NVME0, NVME1]) {
      await admin.client.bind({ bdf, variants: undefined }).catch((error: unknown) => {
        if (errnoOf(error) !== 'EBUSY') throw error;
      });
    }
    const space = await VfioDmaSpace.open(app, { device: device.client, deviceIommufd: deviceIommufd.client, iommufd: dev.client });
    const [source, target] = [await space.openDevice(NVME0), await space.openDevice(NVME1)];
    log(`pid ${app.pid}: nvme0 (${NVME0}, fd ${source.fd}) and nvme1 (${NVME1}, fd ${target.fd}) opened through vfio-pci, both attached to IOAS ${space.ioasId}`);

    const nvme0 = await NvmeDriver.start(source.registers, space);
    const nvme1 = await NvmeDriver.start(target.registers, space);
    const ns0 = await nvme0.identifyNamespace(NSID);
    const ns1 = await nvme1.identifyNamespace(NSID);
    log(`controllers ready: nvme0 namespace ${NSID} ${ns0.blocks} blocks of ${ns0.blockSize} bytes, nvme1 namespace ${NSID} ${ns1.blocks} blocks of ${ns1.blockSize} bytes`);
    const q0 = await nvme0.createIoQueuePair(1, 64);
    const q1 = await nvme1.createIoQueuePair(1, 64);

    // nvme1's CMB, twice: as nvme1 knows it (CMBMSC's base address), and as nvme0 reaches it (a dma-buf in the IOAS).
    const cmb = await nvme1.enableCmb(await target.barAddress(CMB_BAR));
    const { fd: cmbFd } = await device.client.deviceFeature({
      pid: app.pid,
      deviceFd: target.fd,
      argsz: 0,
      flags: VFIO_DEVICE_FEATURE_GET | VFIO_DEVICE_FEATURE_DMA_BUF,
      payload: { $case: 'dmaBuf', value: { regionIndex: CMB_BAR, openFlags: O_RDWR, flags: 0, dmaRanges: [{ offset: 0n, length: BigInt(chunk) }] } },
    });
    const cmbIova = await space.mapFile(cmbFd, chunk);
    log(`nvme1's CMB: ${cmb.size} bytes at bus address ${hex(cmb.address)} (CMBMSC.CBA); its first ${chunk} bytes are dma-buf fd ${cmbFd}, at IOVA ${hex(cmbIova)} for nvme0`);

    // The source blocks: a pattern written to nvme0 from host memory.
    const host = await space.allocate(length);
    const expected = Buffer.alloc(length);
    for (let i = 0; i < length; i += 4) expected.writeUInt32LE((Math.imul(i, 0x9e3779b1) ^ 0x5eed) >>> 0, i);
    expected.copy(host.view);
    const blocksPerChunk = chunk / ns0.blockSize;
    for (let at = 0; at < length; at += chunk) {
      await nvme0.io(q0, NVME_CMD_WRITE, NSID, BigInt(at / ns0.blockSize), blocksPerChunk, host.address + BigInt(at), ns0.blockSize);
    }
    log(`${length} bytes written to nvme0 namespace ${NSID} from host memory`);

    // cmb_copy: nvme0 -> nvme1's CMB (peer to peer), then nvme1's CMB -> nvme1's namespace.
    for (let at = 0; at < length; at += chunk) {
      const lba = BigInt(at / ns0.blockSize);
      await nvme0.io(q0, NVME_CMD_READ, NSID, lba, blocksPerChunk, cmbIova, ns0.blockSize);
      await nvme1.io(q1, NVME_CMD_WRITE, NSID, lba, chunk / ns1.blockSize, cmb.address, ns1.blockSize);
    }
    log(`${length / chunk} chunks of ${chunk} bytes: nvme0 Read into nvme1's CMB, nvme1 Write from its CMB`);

    host.view.fill(0, 0, length);
    for (let at = 0; at < length; at += chunk) {
      await nvme1.io(q1, NVME_CMD_READ, NSID, BigInt(at / ns1.blockSize), chunk / ns1.blockSize, host.address + BigInt(at), ns1.blockSize);
    }
    const copied = Buffer.from(host.view.subarray(0, length));
    log(`${length} bytes read back from nvme1 namespace ${NSID} into host memory`);
    await nvme0.shutdown();
    await nvme1.shutdown();
    return { expected, copied };
  } finally {
    for (const peer of [device, deviceIommufd, dev, admin]) peer.close();
    await app.close();
  }
}

if (require.main === module) {
  spdkCmbCopy({
    registry: process.env.DMABUF_REGISTRY_ADDRESS ?? '127.0.0.1:50053',
    vfioPci: process.env.VFIO_PCI_ADDRESS ?? '127.0.0.1:50052',
    log: (line) => console.log(line),
  }).then(
    ({ expected, copied }) => {
      const identical = copied.equals(expected);
      console.log(`${expected.length} bytes copied from nvme0 to nvme1 through nvme1's CMB: ${identical ? 'identical' : 'different'}`);
      process.exit(identical ? 0 : 1);
    },
    (error: unknown) => {
      console.error(error);
      process.exit(1);
    },
  );
}
