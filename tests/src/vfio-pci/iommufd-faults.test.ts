import * as fs from 'node:fs';
import * as path from 'node:path';
import { credentials, type ClientReadableStream } from '@grpc/grpc-js';
import { expect } from 'chai';
import { RegistrySession } from '@p2p/dmabuf-client';
import {
  decodeDmaCompletion,
  DMA_DESC_COMPLETION,
  DMA_DESCRIPTOR_SIZE,
  DMA_ERRORS,
  DMA_RING_BASE,
  DMA_RING_CTRL,
  DMA_RING_CTRL_ENABLE,
  DMA_RING_SIZE,
  DMA_RING_STATUS,
  DMA_RING_STATUS_HALTED,
  DMA_RING_TAIL,
  DMA_SRC_IOVA,
  DMA_STATUS,
  DMA_STATUS_DONE,
  DMA_STATUS_ERROR,
  encodeDmaDescriptor,
} from '@p2p/pci-emu';
import { dmabuf, iommufd, pci, vfio } from '@p2p/proto';
import { asAdmin, eventually, type ServiceProcess, startServiceProcess, tempShmDir } from '@p2p/testing';
import { iommufdUapi, pciRegs, vfioUapi } from '@p2p/vfio-pci';
import { EventLog, HelperProcess, processState, rawClient, registryState, segmentNames } from '../dmabuf-registry/fixtures';
import { doorbellRegisters, u32, u64 } from '@p2p/user-driver';
import { pattern } from '../harness/accel-dma';
import { rpc } from '../harness/rpc';
import { startPlatformProcesses } from '../harness/platform-processes';
import { exportBarRange, mapHeap } from '../harness/vfio-dma';

const ACCEL0 = '0000:07:00.0';
const NVME1 = '0000:08:00.0';
/** nvme1's controller memory buffer (CMBLOC.BIR). */
const CMB_BAR = 2;
const BAR0 = vfioUapi.VFIO_PCI_BAR0_REGION_INDEX;
const CONFIG_REGION = vfioUapi.VFIO_PCI_CONFIG_REGION_INDEX;
const { PCI_COMMAND, PCI_COMMAND_MEMORY, PCI_COMMAND_MASTER } = pciRegs;
const { IOMMU_IOAS_MAP_FIXED_IOVA, IOMMU_IOAS_MAP_READABLE, IOMMU_IOAS_MAP_WRITEABLE } = iommufdUapi;
const RW = IOMMU_IOAS_MAP_FIXED_IOVA | IOMMU_IOAS_MAP_READABLE | IOMMU_IOAS_MAP_WRITEABLE;
const KiB = 1024;
const SIZE = 64 * KiB;
const CMB_IOVA = 0x2000_0000n;
const HEAP_IOVA = 0x4000_0000n;
/** Where a second heap buffer goes, clear of the first; and a third, clear of both. */
const HEAP2_IOVA = 0x4800_0000n;
const HEAP3_IOVA = 0x5000_0000n;
const ACK_TIMEOUT_MS = 400;
/** How long a call to a dead or restarting peer may take before it counts as a hang. */
const NO_HANG_MS = 3000;
const { EventKind } = dmabuf;

const u16 = (value: number): Buffer => {
  const b = Buffer.alloc(2);
  b.writeUInt16LE(value);
  return b;
};

/** `promise`, or a failure naming `what` if it takes longer than `ms`. */
async function within<T>(ms: number, what: string, promise: Promise<T>): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  try {
    return await Promise.race([
      promise,
      new Promise<never>((_resolve, reject) => {
        timer = setTimeout(() => reject(new Error(`${what} did not return within ${ms} ms`)), ms);
      }),
    ]);
  } finally {
    clearTimeout(timer);
  }
}

/** The bytes behind a BAR range, read straight from pci-emu's segment files (what the DMA writes, decode or not). */
interface BarBacking {
  read(): Buffer;
}

/**
 * Fault injection against iommufd DMA mapping, pci-emu, the registry and
 * vfio-pci each its own process, the mapping process a child process of its
 * own where it must die or freeze for real: a revoke under a running DMA
 * loop, the mapping process SIGKILLed or SIGSTOPped, pci-emu restarted under
 * live mappings. Every test checks what a user would notice: no byte of a
 * revoked buffer changes once the revoke returned, calls end with an errno
 * instead of hanging, and no domain, pin, heap segment, iommufd context or
 * fd is left behind.
 */
describe('iommufd DMA mapping under faults (pci-emu, registry and vfio-pci as processes)', function () {
  this.timeout(30_000);

  let shmDir: string;
  let env: NodeJS.ProcessEnv;
  let pciEmu: ServiceProcess;
  let registry: ServiceProcess;
  let vfioPci: ServiceProcess;
  let admin: vfio.VfioPciServiceClient;
  let adminIommufd: iommufd.IommufdServiceClient;
  let pciClient: pci.PciEmuServiceClient;
  let raw: dmabuf.DmaBufRegistryServiceClient;
  let events: EventLog;
  let processes: Process[];
  let helpers: HelperProcess[];
  let closers: Array<() => void>;

  beforeEach(async () => {
    processes = [];
    helpers = [];
    closers = [];
    shmDir = tempShmDir();
    env = { P2P_SHM_DIR: shmDir, LOG_LEVEL: 'warn', DMABUF_REGISTRY_ACK_TIMEOUT_MS: String(ACK_TIMEOUT_MS) };
    ({ pciEmu, registry } = await startPlatformProcesses(env));
    vfioPci = await startServiceProcess('vfio-pci', 'VFIO_PCI', {
      env: { ...env, PCI_EMU_ADDRESS: pciEmu.address, DMABUF_REGISTRY_ADDRESS: registry.address, VFIO_PCI_CONNECT_TIMEOUT_MS: '5000' },
    });
    const root = asAdmin(shmDir);
    admin = new vfio.VfioPciServiceClient(vfioPci.address, root.credentials, root.options);
    adminIommufd = new iommufd.IommufdServiceClient(vfioPci.address, root.credentials, root.options);
    pciClient = new pci.PciEmuServiceClient(pciEmu.address, root.credentials, root.options);
    raw = rawClient(registry.address, shmDir);
    events = await EventLog.open(registry.address, shmDir);
    await bind(ACCEL0);
    await bind(NVME1);
  });

  afterEach(async () => {
    await Promise.all(helpers.map((helper) => helper.kill()));
    await Promise.all(processes.map((p) => p.exit().catch(() => undefined)));
    for (const close of closers) close();
    events?.close();
    for (const client of [raw, admin, adminIommufd, pciClient]) client?.close();
    // vfio-pci first (it exits with the registry anyway), pci-emu last and gracefully, so it unlinks its segments.
    await vfioPci?.stop('SIGKILL');
    await registry?.stop('SIGKILL');
    await pciEmu?.stop('SIGTERM');
    fs.rmSync(shmDir, { recursive: true, force: true });
  });

  /* ---- helpers ---- */

  /** A process inside this test's Node process: a registry session, and its calls to vfio-pci with its credential. */
  interface Process {
    readonly pid: number;
    readonly session: RegistrySession;
    readonly device: vfio.VfioPciServiceClient;
    readonly deviceIommufd: vfio.VfioDeviceIommufdServiceClient;
    readonly dev: iommufd.IommufdServiceClient;
    exit(): Promise<void>;
  }

  /**
   * Clients acting as the process of `session`, on a connection of their own
   * (grpc-js shares one per target otherwise): each call makes another thread
   * of that process.
   */
  function clientsOf(session: RegistrySession): Pick<Process, 'device' | 'deviceIommufd' | 'dev'> & { close(): void } {
    const asProcess = { interceptors: [session.interceptor], 'grpc.use_local_subchannel_pool': 1 };
    const device = new vfio.VfioPciServiceClient(vfioPci.address, credentials.createInsecure(), asProcess);
    const deviceIommufd = new vfio.VfioDeviceIommufdServiceClient(vfioPci.address, credentials.createInsecure(), asProcess);
    const dev = new iommufd.IommufdServiceClient(vfioPci.address, credentials.createInsecure(), asProcess);
    return {
      device,
      deviceIommufd,
      dev,
      close: () => {
        for (const client of [device, deviceIommufd, dev]) client.close();
      },
    };
  }

  async function open(name: string): Promise<Process> {
    const session = await RegistrySession.open(registry.address, { name, shmDir });
    const clients = clientsOf(session);
    const p: Process = {
      pid: session.pid,
      session,
      ...clients,
      exit: async () => {
        clients.close();
        await session.close();
      },
    };
    processes.push(p);
    return p;
  }

  /** A child process running tests/dist/vfio-pci/processes/iommufd-user.js: /dev/iommu open and an IOAS allocated. */
  async function spawnUser(name: string): Promise<{ user: HelperProcess; pid: number; ioasId: number }> {
    const file = path.join(__dirname, 'processes', 'iommufd-user.js');
    const { helper, ready } = await HelperProcess.startFile(file, [registry.address, vfioPci.address, shmDir, name]);
    helpers.push(helper);
    return { user: helper, pid: ready['pid'] as number, ioasId: ready['ioasId'] as number };
  }

  const bind = (bdf: string): Promise<vfio.BindResponse> => rpc((cb) => admin.bind({ bdf, variants: undefined }, cb));
  const openDevice = async (p: Pick<Process, 'pid' | 'device'>, bdf: string): Promise<number> => (await rpc<vfio.OpenDeviceResponse>((cb) => p.device.openDevice({ pid: p.pid, bdf }, cb))).fd;
  const regionWrite = (p: Pick<Process, 'pid' | 'device'>, deviceFd: number, index: number, offset: number, data: Buffer): Promise<unknown> =>
    rpc((cb) => p.device.regionWrite({ pid: p.pid, deviceFd, index, offset: BigInt(offset), data }, cb));
  const regionRead = async (p: Pick<Process, 'pid' | 'device'>, deviceFd: number, index: number, offset: number, count: number): Promise<Buffer> =>
    (await rpc<vfio.RegionReadResponse>((cb) => p.device.regionRead({ pid: p.pid, deviceFd, index, offset: BigInt(offset), count }, cb))).data;
  const setCommand = (p: Pick<Process, 'pid' | 'device'>, deviceFd: number, command: number): Promise<unknown> => regionWrite(p, deviceFd, CONFIG_REGION, PCI_COMMAND, u16(command));

  /** VFIO_DEVICE_FEATURE_DMA_BUF: the first `length` bytes of nvme1's CMB as a one-range dma-buf. */
  const exportCmb = (p: Process, nvmeFd: number, length: number): Promise<number> => exportBarRange(p.device, p.pid, nvmeFd, CMB_BAR, length);

  /** A heap buffer holding `bytes`, mmapped: its fd, buffer id and the address of the mapping. */
  const heapMapping = (p: Process, bytes: Buffer): ReturnType<typeof mapHeap> => mapHeap(p.session, bytes);

  /** /dev/iommu and an IOAS of `p`'s. */
  async function openIoas(p: Process): Promise<{ ictx: number; ioasId: number }> {
    const { fd: ictx } = await rpc<iommufd.OpenIommufdResponse>((cb) => p.dev.openIommufd({ pid: p.pid }, cb));
    const { outIoasId: ioasId } = await rpc<iommufd.IoasAllocResponse>((cb) => p.dev.ioasAlloc({ pid: p.pid, fd: ictx, flags: 0 }, cb));
    return { ictx, ioasId };
  }

  const ioasMap = (p: Process, ictx: number, ioasId: number, userVa: bigint, length: number, iova: bigint, flags = RW): Promise<unknown> =>
    rpc((cb) => p.dev.ioasMap({ pid: p.pid, fd: ictx, flags, ioasId, reserved: 0, userVa, length: BigInt(length), iova }, cb));
  const ioasMapFile = (p: Process, ictx: number, ioasId: number, mapFd: number, length: number, iova: bigint): Promise<unknown> =>
    rpc((cb) => p.dev.ioasMapFile({ pid: p.pid, fd: ictx, flags: RW, ioasId, mapFd, start: 0n, length: BigInt(length), iova }, cb));

  /** VFIO_DEVICE_BIND_IOMMUFD and ATTACH_IOMMUFD_PT to the IOAS. */
  async function attach(p: Process, deviceFd: number, ictx: number, ioasId: number): Promise<void> {
    await rpc((cb) => p.deviceIommufd.bindIommufd({ pid: p.pid, deviceFd, flags: 0, iommufd: ictx }, cb));
    await rpc((cb) => p.deviceIommufd.attachIommufdPt({ pid: p.pid, deviceFd, flags: 0, ptId: ioasId, pasid: 0 }, cb));
  }

  /** One transfer of accel0's DMA engine, rung with one register write; STATUS and ERROR. */
  async function dma(p: Pick<Process, 'pid' | 'device'>, accelFd: number, src: bigint, dst: bigint, length: number): Promise<[number, number]> {
    await regionWrite(p, accelFd, BAR0, DMA_SRC_IOVA, doorbellRegisters(src, dst, length));
    const status = await regionRead(p, accelFd, BAR0, DMA_STATUS, 8);
    return [status.readUInt32LE(0), status.readUInt32LE(4)];
  }

  /** The transfer a helper process ran: [STATUS, ERROR]. */
  const dmaOf = async (user: HelperProcess, accelFd: number, src: bigint, dst: bigint, length: number): Promise<[number, number]> => {
    const reply = await user.ok(`dma ${accelFd} ${src} ${dst} ${length}`);
    return [reply['status'] as number, reply['error'] as number];
  };

  const domains = async (): Promise<pci.IommuDomain[]> => (await rpc<pci.ListIommuDomainsResponse>((cb) => pciClient.listIommuDomains({ domainId: 0 }, cb))).domains;
  const contexts = async (): Promise<iommufd.IommufdListing[]> => (await rpc<iommufd.ListIommufdsResponse>((cb) => adminIommufd.listIommufds({}, cb))).iommufds;
  const listDevices = (): Promise<vfio.ListDevicesResponse> => rpc((cb) => admin.listDevices({}, cb));
  /** The pins vfio-pci's own registry session holds (ProcessInfo.pin_count). */
  const vfioPins = async (): Promise<number> => (await registryState(raw)).processes.processes.find((p) => p.name === 'vfio-pci')!.pinCount;
  const processListed = async (pid: number): Promise<dmabuf.ProcessInfo | undefined> => (await registryState(raw)).processes.processes.find((p) => p.pid === pid);
  /** Segment files that are not pci-emu's BAR memory: the heap's. */
  const heapSegments = (): string[] => segmentNames(shmDir).filter((name) => !name.startsWith('pci-emu.'));

  /** The segment files behind nvme1's CMB [0, length) as pci-emu has them now. */
  async function cmbBacking(length: number): Promise<BarBacking> {
    const { extents } = await rpc<pci.GetBarSegmentsResponse>((cb) => pciClient.getBarSegments({ bdf: NVME1, bar: CMB_BAR, offset: 0n, length: BigInt(length) }, cb));
    return {
      read: () =>
        Buffer.concat(
          extents.map((extent) => {
            const out = Buffer.alloc(Number(extent.length));
            const fd = fs.openSync(path.join(shmDir, extent.segment), 'r');
            try {
              fs.readSync(fd, out, 0, out.length, Number(extent.offset));
            } finally {
              fs.closeSync(fd);
            }
            return out;
          }),
        ),
    };
  }

  /** pci-emu's event stream, collected from the moment the server has subscribed. */
  async function watchPci(): Promise<pci.WatchEventsResponse[]> {
    const seen: pci.WatchEventsResponse[] = [];
    const stream: ClientReadableStream<pci.WatchEventsResponse> = pciClient.watchEvents({ bdfs: [] });
    stream.on('data', (event: pci.WatchEventsResponse) => seen.push(event));
    stream.on('error', () => undefined);
    closers.push(() => stream.cancel());
    await new Promise<void>((resolve, reject) => {
      stream.once('metadata', () => resolve());
      stream.once('error', reject);
    });
    return seen;
  }

  /**
   * Every process gone, then: no process but vfio-pci's own (holding no fd,
   * VMA or pin), no buffer, no open device, no iommufd context, no IOMMU
   * domain, and no segment file but pci-emu's BAR memory.
   */
  async function expectNothingLeft(): Promise<void> {
    await Promise.all(processes.map((p) => p.exit().catch(() => undefined)));
    await Promise.all(helpers.map((helper) => helper.kill()));
    const applications = (listed: dmabuf.ListProcessesResponse): dmabuf.ProcessInfo[] => listed.processes.filter((p) => p.name !== 'vfio-pci');
    await eventually('every process to exit', async () => applications((await registryState(raw)).processes).length === 0);
    await eventually('every buffer to be released', async () => (await registryState(raw)).buffers.length === 0);
    await eventually('every device to be closed', async () => (await listDevices()).devices.every((d) => d.openCount === 0));
    await eventually('every iommufd context to be torn down', async () => (await contexts()).length === 0);
    expect(await domains(), 'IOMMU domains').to.deep.equal([]);
    const state = await registryState(raw);
    expect(state.processes.processes.map((p) => [p.name, p.fds.length, p.vmaCount, p.pinCount]), "vfio-pci's own session").to.deep.equal([['vfio-pci', 0, 0, 0]]);
    expect(heapSegments(), 'segment files other than pci-emu BAR memory').to.deep.equal([]);
  }

  /* ---- 1. a revoke under a running DMA loop ---- */

  /** One transfer of the loop: which heap slot to which CMB slot, and how it ended. */
  interface Transfer {
    readonly seed: number;
    readonly dstSlot: number;
    /** Rung after the MEM-clear write had returned to the revoking client. */
    readonly afterRevoke: boolean;
    readonly status: number;
    readonly error: number;
  }

  it('a revoke under a running DMA loop: from the return of the MEM-clear write no byte of the CMB changes, and every later transfer is an IOMMU write fault', async () => {
    // 255 heap slots into 16 CMB slots: a (source, target) pair comes back only after 4080 transfers.
    const SLOT = 4 * KiB;
    const HEAP_SLOTS = 255;
    const CMB_SLOTS = SIZE / SLOT;
    const p = await open('spdk');
    const accelFd = await openDevice(p, ACCEL0);
    const nvmeFd = await openDevice(p, NVME1);
    await setCommand(p, nvmeFd, PCI_COMMAND_MEMORY);
    await setCommand(p, accelFd, PCI_COMMAND_MEMORY | PCI_COMMAND_MASTER);
    const heap = await heapMapping(p, Buffer.concat(Array.from({ length: HEAP_SLOTS }, (_, slot) => pattern(SLOT, slot + 1))));
    const cmbFd = await exportCmb(p, nvmeFd, SIZE);
    const { ictx, ioasId } = await openIoas(p);
    await ioasMapFile(p, ictx, ioasId, cmbFd, SIZE, CMB_IOVA);
    await ioasMap(p, ictx, ioasId, heap.addr, HEAP_SLOTS * SLOT, HEAP_IOVA, IOMMU_IOAS_MAP_FIXED_IOVA | IOMMU_IOAS_MAP_READABLE);
    await attach(p, accelFd, ictx, ioasId);
    const cmb = await cmbBacking(SIZE);
    const pciEvents = await watchPci();

    // The loop rings accel0 on a channel of its own, one transfer at a time, as fast as the round trips go.
    const ringer = clientsOf(p.session);
    closers.push(() => ringer.close());
    const doorbells = { pid: p.pid, device: ringer.device };
    const transfers: Transfer[] = [];
    let revoked = false;
    let stop = false;
    const loop = (async () => {
      for (let i = 0; !stop; i++) {
        const afterRevoke = revoked;
        const seed = (i % HEAP_SLOTS) + 1;
        const dstSlot = i % CMB_SLOTS;
        const [status, error] = await dma(doorbells, accelFd, HEAP_IOVA + BigInt((seed - 1) * SLOT), CMB_IOVA + BigInt(dstSlot * SLOT), SLOT);
        transfers.push({ seed, dstSlot, afterRevoke, status, error });
      }
    })();
    const after = (): Transfer[] => transfers.filter((t) => t.afterRevoke);
    let atRevoke: Buffer = Buffer.alloc(0);
    try {
      await eventually('20 transfers before the revoke', () => transfers.length >= 20);
      await setCommand(p, nvmeFd, 0);
      // The CMB as the write returns; every transfer rung from here on counts as after the revoke.
      revoked = true;
      atRevoke = cmb.read();
      await eventually('20 transfers rung after the revoke', () => after().length >= 20);
    } finally {
      stop = true;
      await loop;
    }

    expect(transfers.filter((t) => !t.afterRevoke && t.status === DMA_STATUS_DONE).length, 'transfers done before the revoke').to.be.at.least(20);
    // Rung after the revoke returned: each one faults on its destination and moves nothing.
    expect(after().map((t) => [t.status, t.error])).to.deep.equal(after().map(() => [DMA_STATUS_ERROR, DMA_ERRORS.IOMMU_FAULT_WRITE]));
    const final = cmb.read();
    expect(final.equals(atRevoke), 'the CMB after the loop vs at the return of the revoke').to.equal(true);
    // What the CMB holds is exactly the last transfer that was DONE into each slot: none landed late or went missing.
    const expected = Buffer.alloc(SIZE);
    for (const t of transfers) if (t.status === DMA_STATUS_DONE) pattern(SLOT, t.seed).copy(expected, t.dstSlot * SLOT);
    expect(final.equals(expected), 'the CMB vs the transfers that were DONE').to.equal(true);
    // Every transfer that failed, failed on the IOMMU: the CMB was unmapped before decode went off.
    const failed = transfers.filter((t) => t.status !== DMA_STATUS_DONE);
    expect(failed.map((t) => t.error)).to.deep.equal(failed.map(() => DMA_ERRORS.IOMMU_FAULT_WRITE));

    // In pci-emu's own order: no transfer completed after the CMB's unmap, and each failure was an IOMMU fault there.
    await eventually("pci-emu's events of every transfer", () => pciEvents.filter((e) => e.event?.$case === 'dmaCompleted').length === transfers.length);
    const unmapAt = pciEvents.findIndex((e) => e.event?.$case === 'iommuUnmapped' && e.event.value.iova === CMB_IOVA);
    expect(unmapAt, "the CMB's unmap in pci-emu's events").to.be.at.least(0);
    const completedAfter = pciEvents.slice(unmapAt).flatMap((e) => (e.event?.$case === 'dmaCompleted' ? [e.event.value.status] : []));
    expect(completedAfter).to.deep.equal(completedAfter.map(() => pci.DmaStatus.DMA_STATUS_ERROR));
    const faults = pciEvents.flatMap((e) => (e.event?.$case === 'iommuFault' && e.bdf === ACCEL0 ? [e.event.value] : []));
    expect(faults.map((f) => [f.write, f.reason])).to.deep.equal(failed.map(() => [true, pci.IommuFaultReason.IOMMU_FAULT_REASON_NOT_MAPPED]));
    // The heap is still mapped; the CMB's area stays, revoked, until userspace unmaps it.
    expect((await domains())[0]!.mappings.map((m) => m.iova)).to.deep.equal([HEAP_IOVA]);
    const ioas = (await contexts())[0]!.objects.find((o) => o.id === ioasId)!.object;
    expect(ioas?.$case === 'ioas' && ioas.value.areas.map((a) => [a.iova, a.revoked])).to.deep.equal([
      [CMB_IOVA, true],
      [HEAP_IOVA, false],
    ]);

    await expectNothingLeft();
  });

  it('a revoke under a streaming descriptor ring: the engine halts at the first descriptor it runs after the unmap, on an IOMMU write fault, and from the return of the MEM-clear write no byte of the CMB changes', async () => {
    const SLOT = 4 * KiB;
    const HEAP_SLOTS = 61;
    const CMB_SLOTS = SIZE / SLOT;
    const ENTRIES = 64;
    const p = await open('dsa-user');
    const accelFd = await openDevice(p, ACCEL0);
    const nvmeFd = await openDevice(p, NVME1);
    await setCommand(p, nvmeFd, PCI_COMMAND_MEMORY);
    await setCommand(p, accelFd, PCI_COMMAND_MEMORY | PCI_COMMAND_MASTER);
    const heap = await heapMapping(p, Buffer.concat(Array.from({ length: HEAP_SLOTS }, (_, slot) => pattern(SLOT, slot + 1))));
    const ring = await heapMapping(p, Buffer.alloc(4 * KiB));
    const cmbFd = await exportCmb(p, nvmeFd, SIZE);
    const { ictx, ioasId } = await openIoas(p);
    await ioasMapFile(p, ictx, ioasId, cmbFd, SIZE, CMB_IOVA);
    await ioasMap(p, ictx, ioasId, heap.addr, HEAP_SLOTS * SLOT, HEAP_IOVA, IOMMU_IOAS_MAP_FIXED_IOVA | IOMMU_IOAS_MAP_READABLE);
    await ioasMap(p, ictx, ioasId, ring.addr, ring.view.length, HEAP2_IOVA);
    await attach(p, accelFd, ictx, ioasId);
    const cmb = await cmbBacking(SIZE);
    await regionWrite(p, accelFd, BAR0, DMA_RING_BASE, u64(HEAP2_IOVA));
    await regionWrite(p, accelFd, BAR0, DMA_RING_SIZE, u32(ENTRIES));
    await regionWrite(p, accelFd, BAR0, DMA_RING_CTRL, u32(DMA_RING_CTRL_ENABLE));

    // The driver streams descriptors, a batch per TAIL write on a channel of its own, and reaps completion records from its memory.
    const ringer = clientsOf(p.session);
    closers.push(() => ringer.close());
    interface Descriptor {
      readonly seed: number;
      readonly dstSlot: number;
      readonly afterRevoke: boolean;
      status: number;
      error: string | undefined;
    }
    const descriptors: Descriptor[] = [];
    let revoked = false;
    let halted = false;
    let reaped = 0;
    const loop = (async () => {
      while (!halted) {
        const fresh = Math.min(8, ENTRIES - 1 - (descriptors.length - reaped));
        for (let i = 0; i < fresh; i++) {
          const n = descriptors.length;
          const seed = (n % HEAP_SLOTS) + 1;
          const dstSlot = n % CMB_SLOTS;
          encodeDmaDescriptor({ src: HEAP_IOVA + BigInt((seed - 1) * SLOT), dst: CMB_IOVA + BigInt(dstSlot * SLOT), length: SLOT }, ring.view, (n % ENTRIES) * DMA_DESCRIPTOR_SIZE);
          descriptors.push({ seed, dstSlot, afterRevoke: revoked, status: 0, error: undefined });
        }
        if (fresh > 0) await regionWrite({ pid: p.pid, device: ringer.device }, accelFd, BAR0, DMA_RING_TAIL, u32(descriptors.length % ENTRIES));
        for (; reaped < descriptors.length; reaped++) {
          const record = decodeDmaCompletion(ring.view, (reaped % ENTRIES) * DMA_DESCRIPTOR_SIZE + DMA_DESC_COMPLETION);
          if (record.status === 0) break;
          Object.assign(descriptors[reaped]!, { status: record.status, error: record.error });
          if (record.status !== DMA_STATUS_DONE) halted = true;
        }
        await new Promise((resolve) => setTimeout(resolve, 1));
      }
    })();
    let atRevoke: Buffer = Buffer.alloc(0);
    try {
      await eventually('40 descriptors done before the revoke', () => descriptors.filter((d) => d.status === DMA_STATUS_DONE).length >= 40);
      await setCommand(p, nvmeFd, 0);
      revoked = true;
      atRevoke = cmb.read();
      await eventually('the ring to halt', () => halted);
    } finally {
      halted = true;
      await loop;
    }

    const ran = descriptors.filter((d) => d.status !== 0);
    const failedAt = ran.findIndex((d) => d.status !== DMA_STATUS_DONE);
    // Every descriptor ran in order: DONE up to one IOMMU write fault, nothing after it.
    expect(failedAt, 'the descriptor the ring halted on').to.equal(ran.length - 1);
    expect([ran[failedAt]!.status, ran[failedAt]!.error]).to.deep.equal([DMA_STATUS_ERROR, 'IOMMU_FAULT_WRITE']);
    expect(descriptors.slice(0, failedAt).every((d) => d.status === DMA_STATUS_DONE)).to.equal(true);
    expect(descriptors.slice(0, failedAt).filter((d) => d.afterRevoke), 'descriptors rung after the revoke returned that moved bytes').to.deep.equal([]);
    const registers = await regionRead(p, accelFd, BAR0, DMA_RING_STATUS, 16);
    expect([registers.readUInt32LE(0), registers.readUInt32LE(4)]).to.deep.equal([DMA_RING_STATUS_HALTED, DMA_ERRORS.IOMMU_FAULT_WRITE]);
    const faultIova = registers.readBigUInt64LE(8);
    expect(faultIova >= CMB_IOVA && faultIova < CMB_IOVA + BigInt(SIZE), 'the fault is in the CMB').to.equal(true);
    // The CMB holds exactly the last DONE descriptor into each slot, as it did when the revoke returned.
    const final = cmb.read();
    expect(final.equals(atRevoke), 'the CMB now vs at the return of the revoke').to.equal(true);
    const expected = Buffer.alloc(SIZE);
    for (const d of descriptors) if (d.status === DMA_STATUS_DONE) pattern(SLOT, d.seed).copy(expected, d.dstSlot * SLOT);
    expect(final.equals(expected), 'the CMB vs the descriptors that were DONE').to.equal(true);

    await expectNothingLeft();
  });

  /* ---- 2. the mapping process killed ---- */

  it('the mapping process killed (SIGKILL) with a heap buffer and a CMB mapped and accel0 attached: its domain, pins, heap segments, iommufd and fds all go, and accel0 serves a new process', async () => {
    const { user, pid } = await spawnUser('dpdk');
    const accelFd = (await user.ok(`open ${ACCEL0}`))['fd'] as number;
    const nvmeFd = (await user.ok(`open ${NVME1}`))['fd'] as number;
    await user.ok(`command ${nvmeFd} ${PCI_COMMAND_MEMORY}`);
    await user.ok(`command ${accelFd} ${PCI_COMMAND_MEMORY | PCI_COMMAND_MASTER}`);
    const cmbFd = (await user.ok(`export ${nvmeFd} ${SIZE}`))['fd'] as number;
    const heap = await user.ok(`heap ${SIZE} 7`);
    const heapBuffer = BigInt(heap['bufferId'] as string);
    await user.ok(`map ${heap['addr'] as string} ${SIZE} ${HEAP_IOVA}`);
    await user.ok(`mapfile ${cmbFd} ${SIZE} ${CMB_IOVA}`);
    await user.ok(`attach ${accelFd}`);
    expect(await dmaOf(user, accelFd, HEAP_IOVA, CMB_IOVA, SIZE)).to.deep.equal([DMA_STATUS_DONE, DMA_ERRORS.NONE]);
    expect((await cmbBacking(SIZE)).read().equals(pattern(SIZE, 7)), 'the CMB after the copy').to.equal(true);

    // What the process holds: accel0's domain with both mappings, one pin of its heap buffer, the heap's segment.
    const [domain] = await domains();
    expect(domain).to.deep.include({ bdfs: [ACCEL0], mappedBytes: BigInt(2 * SIZE) });
    expect(await vfioPins()).to.equal(1);
    const state = await registryState(raw);
    expect(state.buffers.find((b) => b.bufferId === heapBuffer)?.userPins).to.equal(1);
    expect(heapSegments(), 'the heap buffer\'s segment').to.have.length(1);
    expect((await contexts()).map((c) => c.pid)).to.deep.equal([pid]);

    await user.kill();

    expect((await user.exited).signal).to.equal('SIGKILL');
    expect(processState(user.pid), 'the OS process').to.equal(undefined);
    await events.waitFor(EventKind.EVENT_KIND_PROCESS_EXIT, { pid });
    expect(await processListed(pid), 'the dead process in ListProcesses').to.equal(undefined);
    await eventually('accel0\'s domain to be freed', async () => (await domains()).length === 0);
    await eventually('vfio-pci\'s pins to go', async () => (await vfioPins()) === 0);
    await eventually('the heap buffer to be released', async () => (await registryState(raw)).buffers.every((b) => b.bufferId !== heapBuffer));
    expect((await registryState(raw)).buffers.filter((b) => b.userPins !== 0), 'buffers with user pins').to.deep.equal([]);
    expect(heapSegments(), 'heap segment files').to.deep.equal([]);
    expect(await contexts(), 'iommufd contexts').to.deep.equal([]);
    expect((await listDevices()).devices.map((d) => [d.bdf, d.openCount])).to.deep.include.members([
      [ACCEL0, 0],
      [NVME1, 0],
    ]);

    // accel0 is free: a new process opens it, attaches it and its DMA engine copies between two heap buffers.
    const next = await open('dpdk-2');
    const nextAccel = await openDevice(next, ACCEL0);
    await setCommand(next, nextAccel, PCI_COMMAND_MEMORY | PCI_COMMAND_MASTER);
    const source = await heapMapping(next, pattern(SIZE, 8));
    const target = await heapMapping(next, Buffer.alloc(SIZE));
    const { ictx, ioasId } = await openIoas(next);
    await ioasMap(next, ictx, ioasId, source.addr, SIZE, HEAP_IOVA);
    await ioasMap(next, ictx, ioasId, target.addr, SIZE, HEAP2_IOVA);
    await attach(next, nextAccel, ictx, ioasId);
    expect(await dma(next, nextAccel, HEAP_IOVA, HEAP2_IOVA, SIZE)).to.deep.equal([DMA_STATUS_DONE, DMA_ERRORS.NONE]);
    expect((await next.session.cpuRead(target.fd, 0, SIZE)).equals(pattern(SIZE, 8)), 'the target heap buffer').to.equal(true);

    await expectNothingLeft();
  });

  /* ---- 3. pci-emu restarted under live mappings ---- */

  it('pci-emu killed (SIGKILL) and restarted under live mappings: DMA-mapping calls fail with an errno instead of hanging, the devices count as surprise-removed, and afterwards a new process maps and DMAs, untouched by the old one\'s exit', async () => {
    const { user, pid } = await spawnUser('spdk');
    const accelFd = (await user.ok(`open ${ACCEL0}`))['fd'] as number;
    const nvmeFd = (await user.ok(`open ${NVME1}`))['fd'] as number;
    await user.ok(`command ${nvmeFd} ${PCI_COMMAND_MEMORY}`);
    await user.ok(`command ${accelFd} ${PCI_COMMAND_MEMORY | PCI_COMMAND_MASTER}`);
    const cmbFd = (await user.ok(`export ${nvmeFd} ${SIZE}`))['fd'] as number;
    const heap = await user.ok(`heap ${SIZE} 21`);
    const spare = await user.ok(`heap ${SIZE} 22`);
    await user.ok(`map ${heap['addr'] as string} ${SIZE} ${HEAP_IOVA}`);
    await user.ok(`mapfile ${cmbFd} ${SIZE} ${CMB_IOVA}`);
    // Both functions in the IOAS's one domain: the process keeps a domain after it lets accel0 go.
    await user.ok(`attach ${accelFd}`);
    await user.ok(`attach ${nvmeFd}`);
    expect(await dmaOf(user, accelFd, HEAP_IOVA, CMB_IOVA, SIZE)).to.deep.equal([DMA_STATUS_DONE, DMA_ERRORS.NONE]);
    expect((await domains()).map((d) => d.bdfs)).to.deep.equal([[ACCEL0, NVME1]]);

    await pciEmu.stop('SIGKILL');

    // While pci-emu is down: every DMA-mapping call that needs the platform IOMMU ends with an errno, at once.
    const down: Array<[string, string]> = [
      ['IOMMU_IOAS_MAP of another heap buffer', `map ${spare['addr'] as string} ${SIZE} ${HEAP2_IOVA}`],
      ['IOMMU_IOAS_UNMAP of the heap buffer', `unmap ${HEAP_IOVA} ${SIZE}`],
      ['a DMA doorbell', `dma ${accelFd} ${HEAP_IOVA} ${CMB_IOVA} ${SIZE}`],
      ['a DMA_BUF export', `export ${nvmeFd} ${SIZE}`],
    ];
    const downErrnos: Record<string, string | undefined> = {};
    for (const [what, line] of down) {
      const reply = await within(NO_HANG_MS, `${what} with pci-emu down`, user.command(line));
      expect(reply.ok, `${what} with pci-emu down: ${JSON.stringify(reply)}`).to.equal(false);
      downErrnos[what] = reply.errno;
    }
    expect(downErrnos).to.deep.equal({
      'IOMMU_IOAS_MAP of another heap buffer': 'EIO',
      'IOMMU_IOAS_UNMAP of the heap buffer': 'EIO',
      'a DMA doorbell': 'EIO',
      'a DMA_BUF export': 'ENODEV',
    });
    // The functions count as surprise-removed: the CMB's buffer was revoked for good, and left the IOAS.
    await eventually('the CMB area to be revoked', async () => {
      const ioas = (await contexts())[0]?.objects.find((o) => o.object?.$case === 'ioas')?.object;
      return ioas?.$case === 'ioas' && ioas.value.areas.find((a) => a.iova === CMB_IOVA)?.revoked === true;
    });

    pciEmu = await startServiceProcess('pci-emu', 'PCI_EMU', { env, port: pciEmu.port });
    pciClient.close();
    const root = asAdmin(shmDir);
    pciClient = new pci.PciEmuServiceClient(pciEmu.address, root.credentials, root.options);
    // vfio-pci's channel may still be backing off from the dead pci-emu: wait until a config read gets through.
    await eventually('vfio-pci to reach the restarted pci-emu', async () => (await user.command(`read-command ${nvmeFd}`)).ok === true, 15_000);

    // The old process lets accel0 go; once closed, the removed function is gone from vfio-pci and is bound afresh.
    await user.ok(`close ${accelFd}`);
    await eventually('the removed accel0 to leave vfio-pci', async () => (await listDevices()).devices.every((d) => d.bdf !== ACCEL0), 5000);
    await bind(ACCEL0);

    // A new process maps two heap buffers for accel0, at the IOVAs the old process used, and its DMA works.
    const next = await open('spdk-2');
    const nextAccel = await openDevice(next, ACCEL0);
    await setCommand(next, nextAccel, PCI_COMMAND_MEMORY | PCI_COMMAND_MASTER);
    const source = await heapMapping(next, pattern(SIZE, 23));
    const target = await heapMapping(next, Buffer.alloc(SIZE));
    const { ictx, ioasId } = await openIoas(next);
    await ioasMap(next, ictx, ioasId, source.addr, SIZE, HEAP_IOVA);
    await ioasMap(next, ictx, ioasId, target.addr, SIZE, HEAP2_IOVA);
    await attach(next, nextAccel, ictx, ioasId);
    expect(await dma(next, nextAccel, HEAP_IOVA, HEAP2_IOVA, SIZE)).to.deep.equal([DMA_STATUS_DONE, DMA_ERRORS.NONE]);
    expect((await next.session.cpuRead(target.fd, 0, SIZE)).equals(pattern(SIZE, 23)), 'the target heap buffer').to.equal(true);
    const nextDomain = await domains();
    expect(nextDomain.map((d) => [d.bdfs, d.mappings.map((m) => m.iova)])).to.deep.equal([[[ACCEL0], [HEAP_IOVA, HEAP2_IOVA]]]);

    // The old process's domain died with the old pci-emu: its calls reach nothing of the new one's.
    const late = await within(NO_HANG_MS, 'IOMMU_IOAS_MAP after the restart', user.command(`map ${spare['addr'] as string} ${SIZE} ${HEAP3_IOVA}`));
    expect([late.ok, late.errno], `IOMMU_IOAS_MAP after the restart: ${JSON.stringify(late)}`).to.deep.equal([false, 'ENOENT']);
    expect(await domains(), "the new process's domain after the old process's map").to.deep.equal(nextDomain);

    // The old process dies: its teardown leaves the new process's domain alone, and its pins and heap go.
    await user.kill();
    await events.waitFor(EventKind.EVENT_KIND_PROCESS_EXIT, { pid });
    await eventually('the old context to be torn down', async () => (await contexts()).every((c) => c.pid !== pid));
    expect(await domains(), "the new process's domain after the old process's exit").to.deep.equal(nextDomain);
    expect(await dma(next, nextAccel, HEAP2_IOVA, HEAP_IOVA, SIZE), 'DMA after the old process exited').to.deep.equal([DMA_STATUS_DONE, DMA_ERRORS.NONE]);
    // Only the new process's two heap buffers are pinned.
    await eventually('the old process\'s pins to go', async () => (await vfioPins()) === 2);
    expect((await registryState(raw)).buffers.filter((b) => b.userPins !== 0).map((b) => b.bufferId).sort()).to.deep.equal([source.bufferId, target.bufferId].sort());

    await expectNothingLeft();
  });

  /* ---- 4. the mapping process frozen through a revoke ---- */

  for (const importer of [false, true]) {
    const holding = importer ? 'a MAP_FILE of the CMB and a dynamic import of it' : 'a MAP_FILE of the CMB';
    it(`the mapping process frozen (SIGSTOP) holding ${holding} while MEM is cleared: the revoke returns in bounded time, no DMA lands after it, and once woken (SIGCONT) the process unmaps and maps again`, async () => {
      // nvme1's driver is this test's process; the CMB's dma-buf goes to the mapping process as SCM_RIGHTS would.
      const driver = await open('nvme-driver');
      const nvmeFd = await openDevice(driver, NVME1);
      await setCommand(driver, nvmeFd, PCI_COMMAND_MEMORY);
      const cmbFd = await exportCmb(driver, nvmeFd, SIZE);
      const { user, pid } = await spawnUser('frozen-app');
      const userCmb = (await user.ok(`receive ${await driver.session.sendFd(cmbFd, pid)}`))['fd'] as number;
      const accelFd = (await user.ok(`open ${ACCEL0}`))['fd'] as number;
      await user.ok(`command ${accelFd} ${PCI_COMMAND_MEMORY | PCI_COMMAND_MASTER}`);
      const heap = await user.ok(`heap ${SIZE} 31`);
      await user.ok(`map ${heap['addr'] as string} ${SIZE} ${HEAP_IOVA}`);
      await user.ok(`mapfile ${userCmb} ${SIZE} ${CMB_IOVA}`);
      await user.ok(`attach ${accelFd}`);
      expect(await dmaOf(user, accelFd, HEAP_IOVA, CMB_IOVA, SIZE)).to.deep.equal([DMA_STATUS_DONE, DMA_ERRORS.NONE]);
      if (importer) await user.ok(`import ${userCmb} ${ACCEL0}`);

      user.signal('SIGSTOP');
      await eventually('the process to be stopped', () => processState(user.pid) === 'T');
      const started = Date.now();
      await within(ACK_TIMEOUT_MS + NO_HANG_MS, 'the MEM-clear write', setCommand(driver, nvmeFd, 0));
      const took = Date.now() - started;
      const atRevoke = (await cmbBacking(SIZE)).read();
      expect(atRevoke.equals(pattern(SIZE, 31)), 'the CMB at the revoke').to.equal(true);
      // vfio-pci unmapped the CMB itself: gone from the domain when the write returned, the process still frozen.
      expect((await domains())[0]!.mappings.map((m) => m.iova), 'mapped IOVAs after the revoke').to.deep.equal([HEAP_IOVA]);
      expect(processState(user.pid), 'the process during the revoke').to.equal('T');
      if (importer) {
        // Only the frozen importer's ack was waited for, and it was fenced at the deadline.
        expect(took, 'the revoke (ms)').to.be.within(ACK_TIMEOUT_MS, ACK_TIMEOUT_MS + 2000);
        expect(events.of(EventKind.EVENT_KIND_FENCE).map((e) => e.pid), 'fenced importers').to.deep.equal([pid]);
      } else {
        expect(took, 'the revoke (ms), nothing to wait for').to.be.below(ACK_TIMEOUT_MS);
        expect(events.of(EventKind.EVENT_KIND_FENCE), 'fences').to.deep.equal([]);
      }

      user.signal('SIGCONT');
      // Woken, the process rings its engine again: the CMB is no longer mapped, and nothing lands.
      expect(await dmaOf(user, accelFd, HEAP_IOVA, CMB_IOVA, SIZE)).to.deep.equal([DMA_STATUS_ERROR, DMA_ERRORS.IOMMU_FAULT_WRITE]);
      expect((await cmbBacking(SIZE)).read().equals(atRevoke), 'the CMB after the woken process rang').to.equal(true);

      // It unmaps the revoked area; once MEM is set again it maps the buffer afresh and DMA reaches the CMB.
      expect((await user.ok(`unmap ${CMB_IOVA} ${SIZE}`))['length']).to.equal(`${SIZE}`);
      await setCommand(driver, nvmeFd, PCI_COMMAND_MEMORY);
      await user.ok(`mapfile ${userCmb} ${SIZE} ${CMB_IOVA}`);
      const heap2 = await user.ok(`heap ${SIZE} 32`);
      await user.ok(`map ${heap2['addr'] as string} ${SIZE} ${HEAP2_IOVA}`);
      expect(await dmaOf(user, accelFd, HEAP2_IOVA, CMB_IOVA, SIZE)).to.deep.equal([DMA_STATUS_DONE, DMA_ERRORS.NONE]);
      expect((await cmbBacking(SIZE)).read().equals(pattern(SIZE, 32)), 'the CMB after the new mapping').to.equal(true);

      await user.ok('exit');
      await expectNothingLeft();
    });
  }
});
