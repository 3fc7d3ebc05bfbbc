import * as fs from 'node:fs';
import { credentials } from '@grpc/grpc-js';
import { expect } from 'chai';
import { startDmabufRegistry } from '@p2p/dmabuf-registry';
import { RegistrySession } from '@p2p/dmabuf-client';
import { DMA_ERRORS, DMA_SRC_IOVA, DMA_STATUS, DMA_STATUS_DONE, DMA_STATUS_ERROR, startPciEmu } from '@p2p/pci-emu';
import { dmabuf, iommufd, pci, vfio } from '@p2p/proto';
import type { RunningServer } from '@p2p/server';
import { asAdmin, asPlatform, eventually, tempShmDir } from '@p2p/testing';
import { IOMMU_READ, IOMMU_WRITE, iommufdUapi, pciRegs, startVfioPci, vfioUapi } from '@p2p/vfio-pci';
import { expectErrno, rpc } from '../harness/rpc';
import { exportBarRange, mapHeap } from '../harness/vfio-dma';

const ACCEL0 = '0000:07:00.0';
const NVME1 = '0000:08:00.0';
/** nvme1's controller memory buffer (CMBLOC.BIR). */
const CMB_BAR = 2;
const BAR0 = vfioUapi.VFIO_PCI_BAR0_REGION_INDEX;
const CONFIG_REGION = vfioUapi.VFIO_PCI_CONFIG_REGION_INDEX;
const { PCI_COMMAND, PCI_COMMAND_MEMORY, PCI_COMMAND_MASTER } = pciRegs;
const { IOMMU_IOAS_MAP_FIXED_IOVA, IOMMU_IOAS_MAP_WRITEABLE, IOMMU_IOAS_MAP_READABLE, IOMMU_VFIO_IOAS_GET } = iommufdUapi;
const { VFIO_TYPE1v2_IOMMU, VFIO_DMA_MAP_FLAG_READ, VFIO_DMA_MAP_FLAG_WRITE } = vfioUapi;
const IOMMU_READ_WRITE = IOMMU_READ | IOMMU_WRITE;
const KiB = 1024;
const CMB_IOVA = 0x2000_0000n;
const HEAP_IOVA = 0x4000_0000n;
const SIZE = 64 * KiB;

const u16 = (value: number): Buffer => {
  const b = Buffer.alloc(2);
  b.writeUInt16LE(value);
  return b;
};

/** A buffer of `length` bytes whose every dword is its offset mixed with `seed`. */
function pattern(length: number, seed: number): Buffer {
  const bytes = Buffer.alloc(length);
  for (let i = 0; i < length; i += 4) bytes.writeUInt32LE(((i ^ seed) * 2654435761) >>> 0, i);
  return bytes;
}

/**
 * iommufd end to end, pci-emu, the registry and vfio-pci in this process: a
 * process binds accel0 to an iommufd, attaches it to an IOAS and maps there
 * a dma-buf of nvme1's CMB (IOMMU_IOAS_MAP_FILE, peer to peer) and its own
 * memory (IOMMU_IOAS_MAP of an mmap of a heap buffer, pinned through the
 * registry), and accel0's DMA engine moves bytes between them; clearing
 * nvme1's memory decode revokes the buffer, and the mapping is gone from
 * pci-emu before the config write returns. The process's exit unpins
 * everything and frees the platform's domain.
 */
describe('iommufd over gRPC (pci-emu, registry and vfio-pci in one process)', function () {
  this.timeout(60_000);
  let shmDir: string;
  let vfioAddress: string;
  let registryAddress: string;
  const servers: RunningServer[] = [];
  let admin: vfio.VfioPciServiceClient;
  let adminIommufd: iommufd.IommufdServiceClient;
  let debugfs: dmabuf.DmaBufRegistryServiceClient;
  let platform: pci.PciEmuServiceClient;
  const processes: Process[] = [];

  before(async () => {
    shmDir = tempShmDir();
    const quiet = { P2P_SHM_DIR: shmDir, LOG_LEVEL: 'warn' };
    const pciEmu = await startPciEmu({ ...quiet, PCI_EMU_HOST: '127.0.0.1', PCI_EMU_PORT: '0', PCI_EMU_METRICS_PORT: '-1' });
    servers.push(pciEmu);
    const pciAddress = `127.0.0.1:${pciEmu.port}`;
    const registry = await startDmabufRegistry({ ...quiet, PCI_EMU_ADDRESS: pciAddress, DMABUF_REGISTRY_HOST: '127.0.0.1', DMABUF_REGISTRY_PORT: '0', DMABUF_REGISTRY_METRICS_PORT: '-1' });
    servers.push(registry);
    registryAddress = `127.0.0.1:${registry.port}`;
    const vfioPci = await startVfioPci({
      ...quiet,
      PCI_EMU_ADDRESS: pciAddress,
      DMABUF_REGISTRY_ADDRESS: registryAddress,
      VFIO_PCI_HOST: '127.0.0.1',
      VFIO_PCI_PORT: '0',
      VFIO_PCI_METRICS_PORT: '-1',
    });
    servers.push(vfioPci);
    vfioAddress = `127.0.0.1:${vfioPci.port}`;
    const root = asAdmin(shmDir);
    admin = new vfio.VfioPciServiceClient(vfioAddress, root.credentials, root.options);
    adminIommufd = new iommufd.IommufdServiceClient(vfioAddress, root.credentials, root.options);
    debugfs = new dmabuf.DmaBufRegistryServiceClient(registryAddress, root.credentials, root.options);
    const hardware = asPlatform(shmDir);
    platform = new pci.PciEmuServiceClient(pciAddress, hardware.credentials, hardware.options);
    await rpc((cb) => admin.bind({ bdf: ACCEL0, variants: undefined }, cb));
    await rpc((cb) => admin.bind({ bdf: NVME1, variants: undefined }, cb));
  });

  after(async () => {
    for (const p of processes) await p.exit().catch(() => undefined);
    for (const client of [admin, adminIommufd, debugfs, platform]) client?.close();
    for (const server of servers.reverse()) await server.shutdown('test over');
    fs.rmSync(shmDir, { recursive: true, force: true });
  });

  const domains = async (): Promise<pci.IommuDomain[]> => (await rpc<pci.ListIommuDomainsResponse>((cb) => platform.listIommuDomains({ domainId: 0 }, cb))).domains;
  const bufInfo = async (): Promise<dmabuf.BufInfo[]> => (await rpc<dmabuf.GetBufInfoResponse>((cb) => debugfs.getBufInfo({}, cb))).buffers;
  /** The pins vfio-pci's registry session holds (ProcessInfo.pin_count). */
  const vfioPins = async (): Promise<number> => {
    const { processes: live } = await rpc<dmabuf.ListProcessesResponse>((cb) => debugfs.listProcesses({}, cb));
    return live.find((p) => p.name === 'vfio-pci')!.pinCount;
  };

  /** A process: a registry session, and its calls to vfio-pci with its credential. */
  interface Process {
    readonly pid: number;
    readonly session: RegistrySession;
    readonly device: vfio.VfioPciServiceClient;
    readonly deviceIommufd: vfio.VfioDeviceIommufdServiceClient;
    readonly dev: iommufd.IommufdServiceClient;
    exit(): Promise<void>;
  }

  async function spawn(name: string): Promise<Process> {
    const session = await RegistrySession.open(registryAddress, { name, shmDir });
    const asProcess = { interceptors: [session.interceptor] };
    const clients = [
      new vfio.VfioPciServiceClient(vfioAddress, credentials.createInsecure(), asProcess),
      new vfio.VfioDeviceIommufdServiceClient(vfioAddress, credentials.createInsecure(), asProcess),
      new iommufd.IommufdServiceClient(vfioAddress, credentials.createInsecure(), asProcess),
    ] as const;
    const p: Process = {
      pid: session.pid,
      session,
      device: clients[0],
      deviceIommufd: clients[1],
      dev: clients[2],
      exit: async () => {
        for (const client of clients) client.close();
        await session.close();
      },
    };
    processes.push(p);
    return p;
  }

  const openDevice = async (p: Process, bdf: string): Promise<number> => (await rpc<vfio.OpenDeviceResponse>((cb) => p.device.openDevice({ pid: p.pid, bdf }, cb))).fd;
  const regionWrite = (p: Process, deviceFd: number, index: number, offset: number, data: Buffer): Promise<unknown> =>
    rpc((cb) => p.device.regionWrite({ pid: p.pid, deviceFd, index, offset: BigInt(offset), data }, cb));
  const regionRead = async (p: Process, deviceFd: number, index: number, offset: number, count: number): Promise<Buffer> =>
    (await rpc<vfio.RegionReadResponse>((cb) => p.device.regionRead({ pid: p.pid, deviceFd, index, offset: BigInt(offset), count }, cb))).data;
  const setCommand = (p: Process, deviceFd: number, command: number): Promise<unknown> => regionWrite(p, deviceFd, CONFIG_REGION, PCI_COMMAND, u16(command));

  /** VFIO_DEVICE_FEATURE_DMA_BUF: the first `length` bytes of nvme1's CMB as a one-range dma-buf. */
  const exportCmb = (p: Process, nvmeFd: number, length: number): Promise<number> => exportBarRange(p.device, p.pid, nvmeFd, CMB_BAR, length);

  /** A heap buffer holding `bytes`, mmapped: its fd, buffer id and the address of the mapping. */
  const heapMapping = (p: Process, bytes: Buffer): Promise<{ fd: number; bufferId: bigint; addr: bigint }> => mapHeap(p.session, bytes);

  /** One transfer of the accelerator's DMA engine, rung with 8-byte register writes; STATUS and ERROR. */
  async function dma(p: Process, accelFd: number, src: bigint, dst: bigint, length: number): Promise<[number, number]> {
    const registers = Buffer.alloc(24);
    registers.writeBigUInt64LE(src, 0);
    registers.writeBigUInt64LE(dst, 8);
    registers.writeBigUInt64LE(BigInt(length) | (1n << 32n), 16);
    await regionWrite(p, accelFd, BAR0, DMA_SRC_IOVA, registers);
    const status = await regionRead(p, accelFd, BAR0, DMA_STATUS, 8);
    return [status.readUInt32LE(0), status.readUInt32LE(4)];
  }

  /** The process exits: its pins and its domain go with it. */
  async function exitAndCheckNothingLeft(p: Process, heapBuffers: readonly bigint[]): Promise<void> {
    await p.exit();
    await eventually('the process exit to free the IOMMU domain', async () => (await domains()).length === 0);
    expect(await vfioPins()).to.equal(0);
    // The heap buffers go once everything the process held (fds, mappings) is released, which
    // need not finish before its domain is freed.
    await eventually('the process exit to free its heap buffers', async () => (await bufInfo()).every((b) => !heapBuffers.includes(b.bufferId)));
    expect((await bufInfo()).filter((b) => b.userPins !== 0)).to.deep.equal([]);
  }

  const RW = IOMMU_IOAS_MAP_FIXED_IOVA | IOMMU_IOAS_MAP_READABLE | IOMMU_IOAS_MAP_WRITEABLE;

  it('maps an nvme1 CMB dma-buf for accel0 through an IOAS, and a revoke unmaps it before the config write returns', async () => {
    const p = await spawn('spdk');
    const accelFd = await openDevice(p, ACCEL0);
    const nvmeFd = await openDevice(p, NVME1);

    // /dev/iommu, an IOAS, accel0 bound and attached.
    const { fd: ictx } = await rpc<iommufd.OpenIommufdResponse>((cb) => p.dev.openIommufd({ pid: p.pid }, cb));
    const { outIoasId: ioasId } = await rpc<iommufd.IoasAllocResponse>((cb) => p.dev.ioasAlloc({ pid: p.pid, fd: ictx, flags: 0 }, cb));
    await expectErrno(rpc((cb) => p.deviceIommufd.attachIommufdPt({ pid: p.pid, deviceFd: accelFd, flags: 0, ptId: ioasId, pasid: 0 }, cb)), 'EINVAL');
    await rpc((cb) => p.deviceIommufd.bindIommufd({ pid: p.pid, deviceFd: accelFd, flags: 0, iommufd: ictx }, cb));
    const { ptId: hwptId } = await rpc<vfio.AttachIommufdPtResponse>((cb) => p.deviceIommufd.attachIommufdPt({ pid: p.pid, deviceFd: accelFd, flags: 0, ptId: ioasId, pasid: 0 }, cb));
    expect(hwptId).to.not.equal(ioasId);
    const ranges = await rpc<iommufd.IoasIovaRangesResponse>((cb) => p.dev.ioasIovaRanges({ pid: p.pid, fd: ictx, ioasId, numIovas: 4, reserved: 0 }, cb));
    expect(ranges.allowedIovas).to.deep.equal([
      { start: 0n, last: 0xfedf_ffffn },
      { start: 0xfef0_0000n, last: (1n << 48n) - 1n },
    ]);

    // A one-range dma-buf of nvme1's CMB, mapped with IOMMU_IOAS_MAP_FILE.
    const cmbFd = await exportCmb(p, nvmeFd, SIZE);
    const mapped = await rpc<iommufd.IoasMapFileResponse>((cb) =>
      p.dev.ioasMapFile({ pid: p.pid, fd: ictx, flags: RW, ioasId, mapFd: cmbFd, start: 0n, length: BigInt(SIZE), iova: CMB_IOVA }, cb),
    );
    expect(mapped.iova).to.equal(CMB_IOVA);

    // The platform IOMMU has the CMB mapped for accel0, peer to peer.
    const [domain] = await domains();
    expect(domain).to.deep.include({ bdfs: [ACCEL0], mappedBytes: BigInt(SIZE) });
    expect(domain!.mappings).to.deep.equal([
      { iova: CMB_IOVA, length: BigInt(SIZE), prot: IOMMU_READ_WRITE, target: { $case: 'bar', value: { bdf: NVME1, bar: CMB_BAR, offset: 0n } } },
    ]);

    // accel0's DMA engine copies inside the CMB through that mapping.
    await setCommand(p, accelFd, PCI_COMMAND_MEMORY | PCI_COMMAND_MASTER);
    await regionWrite(p, nvmeFd, CMB_BAR, 0, Buffer.from('peer to peer through iommufd'));
    expect(await dma(p, accelFd, CMB_IOVA, CMB_IOVA + BigInt(SIZE / 2), 28)).to.deep.equal([DMA_STATUS_DONE, DMA_ERRORS.NONE]);
    expect((await regionRead(p, nvmeFd, CMB_BAR, SIZE / 2, 28)).toString()).to.equal('peer to peer through iommufd');

    // Clearing nvme1's MEM revokes the buffer: the mapping is gone when the write returns, and stays gone.
    await setCommand(p, nvmeFd, 0);
    expect((await domains())[0]).to.deep.include({ mappings: [], mappedBytes: 0n });
    await setCommand(p, nvmeFd, PCI_COMMAND_MEMORY);
    expect((await domains())[0]!.mappings).to.deep.equal([]);
    expect(await dma(p, accelFd, CMB_IOVA, CMB_IOVA + BigInt(SIZE / 2), 28)).to.deep.equal([DMA_STATUS_ERROR, DMA_ERRORS.IOMMU_FAULT_READ]);

    // iommufd keeps the area (revoked) until userspace unmaps it and maps the buffer again.
    const { iommufds } = await rpc<iommufd.ListIommufdsResponse>((cb) => adminIommufd.listIommufds({}, cb));
    const ioas = iommufds[0]!.objects.find((o) => o.id === ioasId)!.object;
    expect(ioas?.$case === 'ioas' && ioas.value.areas).to.deep.equal([
      { iova: CMB_IOVA, length: BigInt(SIZE), prot: IOMMU_READ_WRITE, kind: iommufd.IoasAreaKind.IOAS_AREA_KIND_DMABUF, revoked: true },
    ]);
    const unmapped = await rpc<iommufd.IoasUnmapResponse>((cb) => p.dev.ioasUnmap({ pid: p.pid, fd: ictx, ioasId, iova: CMB_IOVA, length: BigInt(SIZE) }, cb));
    expect(unmapped.length).to.equal(BigInt(SIZE));
    await rpc((cb) => p.dev.ioasMapFile({ pid: p.pid, fd: ictx, flags: RW, ioasId, mapFd: cmbFd, start: 0n, length: BigInt(SIZE), iova: CMB_IOVA }, cb));
    expect((await domains())[0]!.mappedBytes).to.equal(BigInt(SIZE));

    // The process's exit takes everything down: no domain is left in the platform.
    await exitAndCheckNothingLeft(p, []);
  });

  it("IOMMU_IOAS_MAP of a process's mmapped heap buffer: pinned once accel0 attaches, its DMA engine copies it into nvme1's CMB", async () => {
    const p = await spawn('dpdk');
    const accelFd = await openDevice(p, ACCEL0);
    const nvmeFd = await openDevice(p, NVME1);
    const expected = pattern(SIZE, 0x5eed);
    const heap = await heapMapping(p, expected);

    // Mapped before any device is attached: iommufd pins lazily, nothing is pinned yet.
    const { fd: ictx } = await rpc<iommufd.OpenIommufdResponse>((cb) => p.dev.openIommufd({ pid: p.pid }, cb));
    const { outIoasId: ioasId } = await rpc<iommufd.IoasAllocResponse>((cb) => p.dev.ioasAlloc({ pid: p.pid, fd: ictx, flags: 0 }, cb));
    const flags = IOMMU_IOAS_MAP_FIXED_IOVA | IOMMU_IOAS_MAP_READABLE;
    const mapped = await rpc<iommufd.IoasMapResponse>((cb) =>
      p.dev.ioasMap({ pid: p.pid, fd: ictx, flags, ioasId, reserved: 0, userVa: heap.addr, length: BigInt(SIZE), iova: HEAP_IOVA }, cb),
    );
    expect(mapped.iova).to.equal(HEAP_IOVA);
    const cmbFd = await exportCmb(p, nvmeFd, SIZE);
    await rpc((cb) => p.dev.ioasMapFile({ pid: p.pid, fd: ictx, flags: RW, ioasId, mapFd: cmbFd, start: 0n, length: BigInt(SIZE), iova: CMB_IOVA }, cb));
    expect(await vfioPins()).to.equal(0);

    // Attaching accel0 gives the IOAS a domain: the heap pages are pinned and mapped, read-only for the device.
    await rpc((cb) => p.deviceIommufd.bindIommufd({ pid: p.pid, deviceFd: accelFd, flags: 0, iommufd: ictx }, cb));
    await rpc((cb) => p.deviceIommufd.attachIommufdPt({ pid: p.pid, deviceFd: accelFd, flags: 0, ptId: ioasId, pasid: 0 }, cb));
    expect(await vfioPins()).to.equal(1);
    expect((await bufInfo()).find((b) => b.bufferId === heap.bufferId)?.userPins).to.equal(1);
    const [domain] = await domains();
    expect(domain!.mappings.map((m) => [m.iova, m.length, m.prot, m.target?.$case])).to.deep.equal([
      [CMB_IOVA, BigInt(SIZE), IOMMU_READ_WRITE, 'bar'],
      [HEAP_IOVA, BigInt(SIZE), IOMMU_READ, 'host'],
    ]);

    // The DMA engine copies the process's memory into the CMB; the CMB holds the heap buffer's bytes.
    await setCommand(p, accelFd, PCI_COMMAND_MEMORY | PCI_COMMAND_MASTER);
    expect(await dma(p, accelFd, HEAP_IOVA, CMB_IOVA, SIZE)).to.deep.equal([DMA_STATUS_DONE, DMA_ERRORS.NONE]);
    expect((await regionRead(p, nvmeFd, CMB_BAR, 0, SIZE)).equals(expected)).to.equal(true);

    // The pin holds the pages through munmap and close: the device's view does not change.
    await p.session.munmap(heap.addr, SIZE);
    await p.session.closeFd(heap.fd);
    await regionWrite(p, nvmeFd, CMB_BAR, 0, Buffer.alloc(SIZE));
    expect(await dma(p, accelFd, HEAP_IOVA, CMB_IOVA, SIZE)).to.deep.equal([DMA_STATUS_DONE, DMA_ERRORS.NONE]);
    expect((await regionRead(p, nvmeFd, CMB_BAR, 0, SIZE)).equals(expected)).to.equal(true);

    await exitAndCheckNothingLeft(p, [heap.bufferId]);
  });

  it('IOMMU_IOAS_MAP of an address nothing maps is EFAULT once a device is attached, and pins nothing', async () => {
    const p = await spawn('stray');
    const accelFd = await openDevice(p, ACCEL0);
    const { fd: ictx } = await rpc<iommufd.OpenIommufdResponse>((cb) => p.dev.openIommufd({ pid: p.pid }, cb));
    const { outIoasId: ioasId } = await rpc<iommufd.IoasAllocResponse>((cb) => p.dev.ioasAlloc({ pid: p.pid, fd: ictx, flags: 0 }, cb));
    await rpc((cb) => p.deviceIommufd.bindIommufd({ pid: p.pid, deviceFd: accelFd, flags: 0, iommufd: ictx }, cb));
    await rpc((cb) => p.deviceIommufd.attachIommufdPt({ pid: p.pid, deviceFd: accelFd, flags: 0, ptId: ioasId, pasid: 0 }, cb));
    const flags = IOMMU_IOAS_MAP_FIXED_IOVA | IOMMU_IOAS_MAP_READABLE;
    await expectErrno(rpc((cb) => p.dev.ioasMap({ pid: p.pid, fd: ictx, flags, ioasId, reserved: 0, userVa: 0x1000_0000n, length: BigInt(SIZE), iova: HEAP_IOVA }, cb)), 'EFAULT');
    expect(await vfioPins()).to.equal(0);
    expect((await domains())[0]!.mappings).to.deep.equal([]);
    await exitAndCheckNothingLeft(p, []);
  });

  it('VFIO_IOMMU_MAP_DMA through a type1 container: accel0 copies a heap buffer into the CMB and the CMB into another heap buffer', async () => {
    const p = await spawn('qemu');
    const accelFd = await openDevice(p, ACCEL0);
    const nvmeFd = await openDevice(p, NVME1);
    const expected = pattern(SIZE, 0xc0ffee);
    const source = await heapMapping(p, expected);
    const target = await heapMapping(p, Buffer.alloc(SIZE));

    // /dev/vfio/vfio: the group joins the container (accel0 attached to its compat IOAS), then TYPE1v2.
    const { fd: container } = await rpc<iommufd.OpenVfioContainerResponse>((cb) => p.dev.openVfioContainer({ pid: p.pid }, cb));
    await rpc((cb) => p.deviceIommufd.setContainer({ pid: p.pid, deviceFd: accelFd, containerFd: container }, cb));
    await rpc((cb) => p.dev.vfioSetIommu({ pid: p.pid, fd: container, type: VFIO_TYPE1v2_IOMMU }, cb));
    // A domain is there already: each MAP_DMA pins at once.
    const mapDma = (vaddr: bigint, iova: bigint, flags: number): Promise<unknown> =>
      rpc((cb) => p.dev.vfioIommuMapDma({ pid: p.pid, fd: container, argsz: 0, flags, vaddr, iova, size: BigInt(SIZE) }, cb));
    await mapDma(source.addr, HEAP_IOVA, VFIO_DMA_MAP_FLAG_READ);
    await mapDma(target.addr, HEAP_IOVA + BigInt(SIZE), VFIO_DMA_MAP_FLAG_READ | VFIO_DMA_MAP_FLAG_WRITE);
    expect(await vfioPins()).to.equal(2);

    // The CMB goes into the container's IOAS with IOMMU_IOAS_MAP_FILE (the container is an iommufd).
    const { ioasId } = await rpc<iommufd.VfioIoasResponse>((cb) => p.dev.vfioIoas({ pid: p.pid, fd: container, ioasId: 0, op: IOMMU_VFIO_IOAS_GET, reserved: 0 }, cb));
    const cmbFd = await exportCmb(p, nvmeFd, SIZE);
    await rpc((cb) => p.dev.ioasMapFile({ pid: p.pid, fd: container, flags: RW, ioasId, mapFd: cmbFd, start: 0n, length: BigInt(SIZE), iova: CMB_IOVA }, cb));

    await setCommand(p, accelFd, PCI_COMMAND_MEMORY | PCI_COMMAND_MASTER);
    expect(await dma(p, accelFd, HEAP_IOVA, CMB_IOVA, SIZE)).to.deep.equal([DMA_STATUS_DONE, DMA_ERRORS.NONE]);
    expect((await regionRead(p, nvmeFd, CMB_BAR, 0, SIZE)).equals(expected)).to.equal(true);
    expect(await dma(p, accelFd, CMB_IOVA, HEAP_IOVA + BigInt(SIZE), SIZE)).to.deep.equal([DMA_STATUS_DONE, DMA_ERRORS.NONE]);
    expect((await p.session.cpuRead(target.fd, 0, SIZE)).equals(expected)).to.equal(true);
    // The source was mapped read-only for the device: a write into it faults and moves nothing.
    expect(await dma(p, accelFd, CMB_IOVA, HEAP_IOVA, 16)).to.deep.equal([DMA_STATUS_ERROR, DMA_ERRORS.IOMMU_FAULT_WRITE]);

    await exitAndCheckNothingLeft(p, [source.bufferId, target.bufferId]);
  });
});
