/**
 * The README's DMA-mapping example: a process maps two things into one
 * iommufd IOAS, nvme1's controller memory buffer (a vfio-pci dma-buf,
 * IOMMU_IOAS_MAP_FILE, peer to peer) and a heap buffer of its own (mmap,
 * then IOMMU_IOAS_MAP: vfio-pci pins the pages through the registry), then
 * attaches accel0 to the IOAS and has accel0's DMA engine copy the heap
 * buffer into the CMB. No CPU touches the bytes in between: the engine
 * reads host memory and writes the CMB through the platform IOMMU. Then it
 * clears nvme1's memory decode: the dma-buf is revoked, the CMB leaves the
 * IOAS, and the engine's next transfer ends in an IOMMU fault.
 *
 *   npm start                                   # in another terminal
 *   node tests/dist/examples/iommufd-p2p.js
 *
 * Addresses: DMABUF_REGISTRY_ADDRESS and VFIO_PCI_ADDRESS; the defaults are
 * npm start's. Binding accel0 and nvme1 to vfio-pci is the administrator's,
 * as writing sysfs is root's: the token comes from P2P_ADMIN_TOKEN or, as
 * npm start leaves it, from `.admin-token` in the segment directory
 * (P2P_SHM_DIR). With P2P_TLS_CA (and P2P_TLS_CERT/P2P_TLS_KEY for mutual
 * TLS) set, every call goes over TLS.
 */
import { loadTlsConfig, readAdminToken, type TlsConfig } from '@p2p/auth';
import { RegistrySession } from '@p2p/dmabuf-client';
import { DMA_ERRORS, DMA_SRC_IOVA, DMA_STATUS, DMA_STATUS_DONE, DMA_STATUS_ERROR, type DmaErrorName } from '@p2p/pci-emu';
import { iommufd, vfio } from '@p2p/proto';
import { connectPeer } from '@p2p/rpc';
import { resolveShmDir } from '@p2p/shm';
import { errnoOf } from '@p2p/status';
import { iommufdUapi, O_RDWR, pciRegs, vfioUapi } from '@p2p/vfio-pci';

const ACCEL0 = '0000:07:00.0';
const NVME1 = '0000:08:00.0';
/** nvme1's controller memory buffer: BAR2 (CMBLOC.BIR), 16 MiB in the default topology. */
const CMB_BAR = 2;
/** Where the process puts the CMB and its heap buffer in the IOAS. */
const CMB_IOVA = 0x2000_0000n;
const HEAP_IOVA = 0x4000_0000n;
const { PCI_COMMAND, PCI_COMMAND_MEMORY, PCI_COMMAND_MASTER } = pciRegs;
const { VFIO_PCI_BAR0_REGION_INDEX, VFIO_PCI_CONFIG_REGION_INDEX, VFIO_DEVICE_FEATURE_GET, VFIO_DEVICE_FEATURE_DMA_BUF } = vfioUapi;
const { IOMMU_IOAS_MAP_FIXED_IOVA, IOMMU_IOAS_MAP_READABLE, IOMMU_IOAS_MAP_WRITEABLE } = iommufdUapi;
const DMA_STATUS_NAMES: Readonly<Record<number, string>> = { [DMA_STATUS_DONE]: 'DONE', [DMA_STATUS_ERROR]: 'ERROR' };
const DMA_ERROR_NAMES = Object.fromEntries(Object.entries(DMA_ERRORS).map(([name, code]) => [code, name])) as Record<number, DmaErrorName>;

export interface IommufdP2pOptions {
  readonly registry: string;
  readonly vfioPci: string;
  /** This process's segment directory; default P2P_SHM_DIR. */
  readonly shmDir?: string;
  /** The administrator's token; default P2P_ADMIN_TOKEN, else the platform's `.admin-token` in shmDir. */
  readonly adminToken?: string;
  /** TLS to every service; default P2P_TLS_* (plaintext when unset). */
  readonly tls?: TlsConfig;
  /** Bytes to copy; default 1 MiB (at most the CMB's 16 MiB). */
  readonly length?: number;
  /** Where progress lines go; default nowhere. */
  readonly log?: (line: string) => void;
}

/** How one transfer of accel0's DMA engine ended: its STATUS, ERROR and FAULT_IOVA registers. */
export interface DmaResult {
  readonly status: number;
  readonly error: DmaErrorName;
  readonly faultIova: bigint;
}

export interface IommufdP2pResult {
  /** What the heap buffer held. */
  readonly expected: Buffer;
  /** What nvme1's CMB held after the copy, read back through vfio-pci's BAR2 region. */
  readonly copied: Buffer;
  /** The copy, and the same transfer once nvme1's memory decode was cleared. */
  readonly transfer: DmaResult;
  readonly afterRevoke: DmaResult;
}

const hex = (value: bigint): string => `0x${value.toString(16)}`;
const outcome = (dma: DmaResult): string => `STATUS=${DMA_STATUS_NAMES[dma.status] ?? dma.status} ERROR=${dma.error}${dma.error === 'NONE' ? '' : ` at IOVA ${hex(dma.faultIova)}`}`;

/** Runs the example; resolves to the bytes the heap buffer and the CMB held, and how both transfers ended. */
export async function iommufdP2p(options: IommufdP2pOptions): Promise<IommufdP2pResult> {
  const length = options.length ?? 1 << 20;
  const log = options.log ?? ((): void => undefined);
  const tls = options.tls ?? loadTlsConfig();
  const app = await RegistrySession.open(options.registry, { name: 'iommufd-app', shmDir: options.shmDir, tls });
  const as = { tls, token: app.credential };
  const device = connectPeer(vfio.VfioPciServiceDefinition, options.vfioPci, { name: 'vfio-pci', ...as });
  const deviceIommufd = connectPeer(vfio.VfioDeviceIommufdServiceDefinition, options.vfioPci, { name: 'vfio-pci', ...as });
  const dev = connectPeer(iommufd.IommufdServiceDefinition, options.vfioPci, { name: 'vfio-pci', ...as });
  const admin = connectPeer(vfio.VfioPciServiceDefinition, options.vfioPci, {
    name: 'vfio-pci',
    tls,
    token: options.adminToken ?? readAdminToken(options.shmDir ?? resolveShmDir()),
  });
  const pid = app.pid;
  const setCommand = async (deviceFd: number, command: number): Promise<void> => {
    const data = Buffer.alloc(2);
    data.writeUInt16LE(command);
    await device.client.regionWrite({ pid, deviceFd, index: VFIO_PCI_CONFIG_REGION_INDEX, offset: BigInt(PCI_COMMAND), data });
  };
  /** Programs SRC_IOVA, DST_IOVA and LEN with the doorbell in one 24-byte write, then reads STATUS, ERROR and FAULT_IOVA. */
  const dma = async (accelFd: number, src: bigint, dst: bigint, bytes: number): Promise<DmaResult> => {
    const registers = Buffer.alloc(24);
    registers.writeBigUInt64LE(src, 0);
    registers.writeBigUInt64LE(dst, 8);
    registers.writeBigUInt64LE(BigInt(bytes) | (1n << 32n), 16); // LEN | DOORBELL_START << 32
    await device.client.regionWrite({ pid, deviceFd: accelFd, index: VFIO_PCI_BAR0_REGION_INDEX, offset: BigInt(DMA_SRC_IOVA), data: registers });
    const { data } = await device.client.regionRead({ pid, deviceFd: accelFd, index: VFIO_PCI_BAR0_REGION_INDEX, offset: BigInt(DMA_STATUS), count: 16 });
    return { status: data.readUInt32LE(0), error: DMA_ERROR_NAMES[data.readUInt32LE(4)] ?? 'NONE', faultIova: data.readBigUInt64LE(8) };
  };
  try {
    // The administrator binds both functions to vfio-pci (EBUSY: bound already).
    for (const bdf of [ACCEL0, NVME1]) {
      await admin.client.bind({ bdf, variants: undefined }).catch((error: unknown) => {
        if (errnoOf(error) !== 'EBUSY') throw error;
      });
    }
    const nvmeFd = (await device.client.openDevice({ pid, bdf: NVME1 })).fd;
    const accelFd = (await device.client.openDevice({ pid, bdf: ACCEL0 })).fd;
    log(`pid ${pid}: opened nvme1 (${NVME1}, fd ${nvmeFd}) and accel0 (${ACCEL0}, fd ${accelFd}) through vfio-pci`);
    // The drivers' pci_enable_device(): nvme1 decodes its BARs; accel0 also masters the bus for its DMA.
    await setCommand(nvmeFd, PCI_COMMAND_MEMORY);
    await setCommand(accelFd, PCI_COMMAND_MEMORY | PCI_COMMAND_MASTER);

    // nvme1's CMB as a one-range dma-buf, mapped into a new IOAS with IOMMU_IOAS_MAP_FILE.
    const { fd: cmbFd } = await device.client.deviceFeature({
      pid,
      deviceFd: nvmeFd,
      argsz: 0,
      flags: VFIO_DEVICE_FEATURE_GET | VFIO_DEVICE_FEATURE_DMA_BUF,
      payload: { $case: 'dmaBuf', value: { regionIndex: CMB_BAR, openFlags: O_RDWR, flags: 0, dmaRanges: [{ offset: 0n, length: BigInt(length) }] } },
    });
    const { fd: ictx } = await dev.client.openIommufd({ pid });
    const { outIoasId: ioasId } = await dev.client.ioasAlloc({ pid, fd: ictx, flags: 0 });
    const rw = IOMMU_IOAS_MAP_FIXED_IOVA | IOMMU_IOAS_MAP_READABLE | IOMMU_IOAS_MAP_WRITEABLE;
    await dev.client.ioasMapFile({ pid, fd: ictx, flags: rw, ioasId, mapFd: cmbFd, start: 0n, length: BigInt(length), iova: CMB_IOVA });
    log(`nvme1's CMB (BAR2): dma-buf fd ${cmbFd}, ${length} bytes, mapped into IOAS ${ioasId} of /dev/iommu fd ${ictx} at IOVA ${hex(CMB_IOVA)} (IOMMU_IOAS_MAP_FILE)`);

    // A heap buffer of the process's own, filled and mmapped, mapped by its address with IOMMU_IOAS_MAP.
    const expected = Buffer.alloc(length);
    for (let i = 0; i < length; i += 4) expected.writeUInt32LE((i * 2654435761) >>> 0, i);
    const { fd: heapFd } = await app.heapAllocate(length);
    await app.cpuWrite(heapFd, 0, expected);
    const { addr } = await app.mmapFd(heapFd, 0, length);
    await dev.client.ioasMap({ pid, fd: ictx, flags: IOMMU_IOAS_MAP_FIXED_IOVA | IOMMU_IOAS_MAP_READABLE, ioasId, reserved: 0, userVa: addr, length: BigInt(length), iova: HEAP_IOVA });
    log(`heap buffer fd ${heapFd}: mmapped at ${hex(addr)}, mapped into IOAS ${ioasId} at IOVA ${hex(HEAP_IOVA)} (IOMMU_IOAS_MAP)`);

    // accel0 joins the IOAS: its domain maps the CMB peer to peer and the heap pages, pinned now.
    await deviceIommufd.client.bindIommufd({ pid, deviceFd: accelFd, flags: 0, iommufd: ictx });
    const { ptId } = await deviceIommufd.client.attachIommufdPt({ pid, deviceFd: accelFd, flags: 0, ptId: ioasId, pasid: 0 });
    log(`accel0 bound to /dev/iommu fd ${ictx} and attached to IOAS ${ioasId} (HWPT ${ptId}): the heap pages are pinned`);

    const transfer = await dma(accelFd, HEAP_IOVA, CMB_IOVA, length);
    log(`accel0's DMA engine, ${length} bytes from IOVA ${hex(HEAP_IOVA)} to IOVA ${hex(CMB_IOVA)}: ${outcome(transfer)}`);
    const copied = (await device.client.regionRead({ pid, deviceFd: nvmeFd, index: CMB_BAR, offset: 0n, count: length })).data;

    // Memory decode off revokes the CMB's dma-buf: vfio-pci unmaps it from the IOAS before the write returns.
    await setCommand(nvmeFd, 0);
    log("nvme1's PCI_COMMAND.MEM cleared through vfio-pci's config region: the CMB dma-buf is revoked and gone from the IOAS");
    const afterRevoke = await dma(accelFd, HEAP_IOVA, CMB_IOVA, length);
    log(`accel0's DMA engine, the same transfer again: ${outcome(afterRevoke)}`);
    return { expected, copied, transfer, afterRevoke };
  } finally {
    for (const peer of [device, deviceIommufd, dev, admin]) peer.close();
    // The process's exit: vfio-pci unpins the heap pages and frees accel0's domain.
    await app.close();
  }
}

if (require.main === module) {
  iommufdP2p({
    registry: process.env.DMABUF_REGISTRY_ADDRESS ?? '127.0.0.1:50053',
    vfioPci: process.env.VFIO_PCI_ADDRESS ?? '127.0.0.1:50052',
    log: (line) => console.log(line),
  }).then(
    ({ expected, copied, transfer }) => {
      const identical = transfer.status === DMA_STATUS_DONE && copied.equals(expected);
      console.log(`${expected.length} bytes copied by accel0's DMA engine from host memory into nvme1's CMB: ${identical ? 'identical' : 'different'}`);
      process.exit(identical ? 0 : 1);
    },
    (error: unknown) => {
      console.error(error);
      process.exit(1);
    },
  );
}
