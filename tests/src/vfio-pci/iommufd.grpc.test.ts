import * as fs from 'node:fs';
import { credentials } from '@grpc/grpc-js';
import { expect } from 'chai';
import { startDmabufRegistry } from '@p2p/dmabuf-registry';
import { RegistrySession } from '@p2p/dmabuf-client';
import { startPciEmu } from '@p2p/pci-emu';
import { iommufd, pci, vfio } from '@p2p/proto';
import type { RunningServer } from '@p2p/server';
import { asAdmin, asPlatform, eventually, tempShmDir } from '@p2p/testing';
import { startVfioPci } from '@p2p/vfio-pci';
import { expectErrno, rpc } from '../harness/rpc';

const ACCEL0 = '0000:07:00.0';
const NVME1 = '0000:08:00.0';
const CMB_BAR = 2;
const BAR0 = 0;
const CONFIG_REGION = 7;
const PCI_COMMAND = 0x04;
const PCI_COMMAND_MEMORY = 0x2;
const PCI_COMMAND_MASTER = 0x4;
const FEATURE_DMA_BUF = 11;
const GET = 1 << 16;
const O_RDWR = 2;
const IOMMU_IOAS_MAP_FIXED_IOVA = 1;
const IOMMU_IOAS_MAP_WRITEABLE = 2;
const IOMMU_IOAS_MAP_READABLE = 4;
const IOMMU_READ_WRITE = 3;
/** The accelerator's DMA engine (BAR0): SRC_IOVA, DST_IOVA, LEN | DOORBELL_START << 32, then STATUS and ERROR. */
const DMA_SRC_IOVA = 0x100;
const DMA_STATUS = 0x118;
const DMA_STATUS_DONE = 2;
const DMA_STATUS_ERROR = 3;
const DMA_ERROR_IOMMU_FAULT_READ = 1;
const KiB = 1024;
const CMB_IOVA = 0x2000_0000n;
const SIZE = 64 * KiB;

const u16 = (value: number): Buffer => {
  const b = Buffer.alloc(2);
  b.writeUInt16LE(value);
  return b;
};

/**
 * iommufd end to end, pci-emu, the registry and vfio-pci in this process: a
 * process binds accel0 to an iommufd, attaches it to an IOAS, maps a dma-buf
 * of nvme1's CMB there with IOMMU_IOAS_MAP_FILE, and the platform IOMMU maps
 * the CMB for accel0 peer to peer; clearing nvme1's memory decode revokes the
 * buffer, and the mapping is gone from pci-emu before the config write
 * returns.
 */
describe('iommufd over gRPC (pci-emu, registry and vfio-pci in one process)', function () {
  this.timeout(60_000);
  let shmDir: string;
  const servers: RunningServer[] = [];
  let admin: vfio.VfioPciServiceClient;
  let adminIommufd: iommufd.IommufdServiceClient;
  let platform: pci.PciEmuServiceClient;
  let session: RegistrySession;
  let device: vfio.VfioPciServiceClient;
  let deviceIommufd: vfio.VfioDeviceIommufdServiceClient;
  let dev: iommufd.IommufdServiceClient;

  before(async () => {
    shmDir = tempShmDir();
    const quiet = { P2P_SHM_DIR: shmDir, LOG_LEVEL: 'warn' };
    const pciEmu = await startPciEmu({ ...quiet, PCI_EMU_HOST: '127.0.0.1', PCI_EMU_PORT: '0', PCI_EMU_METRICS_PORT: '-1' });
    servers.push(pciEmu);
    const pciAddress = `127.0.0.1:${pciEmu.port}`;
    const registry = await startDmabufRegistry({ ...quiet, PCI_EMU_ADDRESS: pciAddress, DMABUF_REGISTRY_HOST: '127.0.0.1', DMABUF_REGISTRY_PORT: '0', DMABUF_REGISTRY_METRICS_PORT: '-1' });
    servers.push(registry);
    const registryAddress = `127.0.0.1:${registry.port}`;
    const vfioPci = await startVfioPci({
      ...quiet,
      PCI_EMU_ADDRESS: pciAddress,
      DMABUF_REGISTRY_ADDRESS: registryAddress,
      VFIO_PCI_HOST: '127.0.0.1',
      VFIO_PCI_PORT: '0',
      VFIO_PCI_METRICS_PORT: '-1',
    });
    servers.push(vfioPci);
    const vfioAddress = `127.0.0.1:${vfioPci.port}`;
    const root = asAdmin(shmDir);
    admin = new vfio.VfioPciServiceClient(vfioAddress, root.credentials, root.options);
    adminIommufd = new iommufd.IommufdServiceClient(vfioAddress, root.credentials, root.options);
    const hardware = asPlatform(shmDir);
    platform = new pci.PciEmuServiceClient(pciAddress, hardware.credentials, hardware.options);
    await rpc((cb) => admin.bind({ bdf: ACCEL0, variants: undefined }, cb));
    await rpc((cb) => admin.bind({ bdf: NVME1, variants: undefined }, cb));
    session = await RegistrySession.open(registryAddress, { name: 'spdk', shmDir });
    const asProcess = { interceptors: [session.interceptor] };
    device = new vfio.VfioPciServiceClient(vfioAddress, credentials.createInsecure(), asProcess);
    deviceIommufd = new vfio.VfioDeviceIommufdServiceClient(vfioAddress, credentials.createInsecure(), asProcess);
    dev = new iommufd.IommufdServiceClient(vfioAddress, credentials.createInsecure(), asProcess);
  });

  after(async () => {
    await session?.close().catch(() => undefined);
    for (const client of [admin, adminIommufd, platform, device, deviceIommufd, dev]) client?.close();
    for (const server of servers.reverse()) await server.shutdown('test over');
    fs.rmSync(shmDir, { recursive: true, force: true });
  });

  const pid = (): number => session.pid;
  const openDevice = async (bdf: string): Promise<number> => (await rpc<vfio.OpenDeviceResponse>((cb) => device.openDevice({ pid: pid(), bdf }, cb))).fd;
  const regionWrite = (deviceFd: number, index: number, offset: number, data: Buffer): Promise<unknown> =>
    rpc((cb) => device.regionWrite({ pid: pid(), deviceFd, index, offset: BigInt(offset), data }, cb));
  const regionRead = async (deviceFd: number, index: number, offset: number, count: number): Promise<Buffer> =>
    (await rpc<vfio.RegionReadResponse>((cb) => device.regionRead({ pid: pid(), deviceFd, index, offset: BigInt(offset), count }, cb))).data;
  const domains = async (): Promise<pci.IommuDomain[]> => (await rpc<pci.ListIommuDomainsResponse>((cb) => platform.listIommuDomains({ domainId: 0 }, cb))).domains;

  /** One transfer of the accelerator's DMA engine, rung with 8-byte register writes; STATUS and ERROR. */
  async function dma(accelFd: number, src: bigint, dst: bigint, length: number): Promise<[number, number]> {
    const registers = Buffer.alloc(24);
    registers.writeBigUInt64LE(src, 0);
    registers.writeBigUInt64LE(dst, 8);
    registers.writeBigUInt64LE(BigInt(length) | (1n << 32n), 16);
    await regionWrite(accelFd, BAR0, DMA_SRC_IOVA, registers);
    const status = await regionRead(accelFd, BAR0, DMA_STATUS, 8);
    return [status.readUInt32LE(0), status.readUInt32LE(4)];
  }

  it('maps an nvme1 CMB dma-buf for accel0 through an IOAS, and a revoke unmaps it before the config write returns', async () => {
    const accelFd = await openDevice(ACCEL0);
    const nvmeFd = await openDevice(NVME1);

    // /dev/iommu, an IOAS, accel0 bound and attached.
    const { fd: ictx } = await rpc<iommufd.OpenIommufdResponse>((cb) => dev.openIommufd({ pid: pid() }, cb));
    const { outIoasId: ioasId } = await rpc<iommufd.IoasAllocResponse>((cb) => dev.ioasAlloc({ pid: pid(), fd: ictx, flags: 0 }, cb));
    await expectErrno(rpc((cb) => deviceIommufd.attachIommufdPt({ pid: pid(), deviceFd: accelFd, flags: 0, ptId: ioasId, pasid: 0 }, cb)), 'EINVAL');
    await rpc((cb) => deviceIommufd.bindIommufd({ pid: pid(), deviceFd: accelFd, flags: 0, iommufd: ictx }, cb));
    const { ptId: hwptId } = await rpc<vfio.AttachIommufdPtResponse>((cb) => deviceIommufd.attachIommufdPt({ pid: pid(), deviceFd: accelFd, flags: 0, ptId: ioasId, pasid: 0 }, cb));
    expect(hwptId).to.not.equal(ioasId);
    const ranges = await rpc<iommufd.IoasIovaRangesResponse>((cb) => dev.ioasIovaRanges({ pid: pid(), fd: ictx, ioasId, numIovas: 4, reserved: 0 }, cb));
    expect(ranges.allowedIovas).to.deep.equal([
      { start: 0n, last: 0xfedf_ffffn },
      { start: 0xfef0_0000n, last: (1n << 48n) - 1n },
    ]);

    // A one-range dma-buf of nvme1's CMB, mapped with IOMMU_IOAS_MAP_FILE.
    const exported = await rpc<vfio.DeviceFeatureResponse>((cb) =>
      device.deviceFeature(
        {
          pid: pid(),
          deviceFd: nvmeFd,
          argsz: 0,
          flags: GET | FEATURE_DMA_BUF,
          payload: { $case: 'dmaBuf', value: { regionIndex: CMB_BAR, openFlags: O_RDWR, flags: 0, dmaRanges: [{ offset: 0n, length: BigInt(SIZE) }] } },
        },
        cb,
      ),
    );
    const flags = IOMMU_IOAS_MAP_FIXED_IOVA | IOMMU_IOAS_MAP_READABLE | IOMMU_IOAS_MAP_WRITEABLE;
    const mapped = await rpc<iommufd.IoasMapFileResponse>((cb) =>
      dev.ioasMapFile({ pid: pid(), fd: ictx, flags, ioasId, mapFd: exported.fd, start: 0n, length: BigInt(SIZE), iova: CMB_IOVA }, cb),
    );
    expect(mapped.iova).to.equal(CMB_IOVA);

    // The platform IOMMU has the CMB mapped for accel0, peer to peer.
    const [domain] = await domains();
    expect(domain).to.deep.include({ bdfs: [ACCEL0], mappedBytes: BigInt(SIZE) });
    expect(domain!.mappings).to.deep.equal([
      { iova: CMB_IOVA, length: BigInt(SIZE), prot: IOMMU_READ_WRITE, target: { $case: 'bar', value: { bdf: NVME1, bar: CMB_BAR, offset: 0n } } },
    ]);

    // accel0's DMA engine copies inside the CMB through that mapping.
    await regionWrite(accelFd, CONFIG_REGION, PCI_COMMAND, u16(PCI_COMMAND_MEMORY | PCI_COMMAND_MASTER));
    await regionWrite(nvmeFd, CMB_BAR, 0, Buffer.from('peer to peer through iommufd'));
    expect(await dma(accelFd, CMB_IOVA, CMB_IOVA + BigInt(SIZE / 2), 28)).to.deep.equal([DMA_STATUS_DONE, 0]);
    expect((await regionRead(nvmeFd, CMB_BAR, SIZE / 2, 28)).toString()).to.equal('peer to peer through iommufd');

    // Clearing nvme1's MEM revokes the buffer: the mapping is gone when the write returns, and stays gone.
    await regionWrite(nvmeFd, CONFIG_REGION, PCI_COMMAND, u16(0));
    expect((await domains())[0]).to.deep.include({ mappings: [], mappedBytes: 0n });
    await regionWrite(nvmeFd, CONFIG_REGION, PCI_COMMAND, u16(PCI_COMMAND_MEMORY));
    expect((await domains())[0]!.mappings).to.deep.equal([]);
    expect(await dma(accelFd, CMB_IOVA, CMB_IOVA + BigInt(SIZE / 2), 28)).to.deep.equal([DMA_STATUS_ERROR, DMA_ERROR_IOMMU_FAULT_READ]);

    // iommufd keeps the area (revoked) until userspace unmaps it and maps the buffer again.
    const { iommufds } = await rpc<iommufd.ListIommufdsResponse>((cb) => adminIommufd.listIommufds({}, cb));
    const ioas = iommufds[0]!.objects.find((o) => o.id === ioasId)!.object;
    expect(ioas?.$case === 'ioas' && ioas.value.areas).to.deep.equal([
      { iova: CMB_IOVA, length: BigInt(SIZE), prot: IOMMU_READ_WRITE, kind: iommufd.IoasAreaKind.IOAS_AREA_KIND_DMABUF, revoked: true },
    ]);
    const unmapped = await rpc<iommufd.IoasUnmapResponse>((cb) => dev.ioasUnmap({ pid: pid(), fd: ictx, ioasId, iova: CMB_IOVA, length: BigInt(SIZE) }, cb));
    expect(unmapped.length).to.equal(BigInt(SIZE));
    await rpc((cb) => dev.ioasMapFile({ pid: pid(), fd: ictx, flags, ioasId, mapFd: exported.fd, start: 0n, length: BigInt(SIZE), iova: CMB_IOVA }, cb));
    expect((await domains())[0]!.mappedBytes).to.equal(BigInt(SIZE));

    // The process's exit takes everything down: no domain is left in the platform.
    await session.close();
    await eventually('the process exit to free the IOMMU domain', async () => (await domains()).length === 0);
  });
});
