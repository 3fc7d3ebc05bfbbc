import { type ChildProcess, spawn } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';
import * as readline from 'node:readline';
import type { ClientReadableStream } from '@grpc/grpc-js';
import { expect } from 'chai';
import { type DmaBufImporter, type MoveNotice, RegistrySession } from '@p2p/dmabuf-client';
import { ErrnoError } from '@p2p/errno';
import { dmabuf, fault, pci, vfio } from '@p2p/proto';
import { asAdmin, eventually, platformSecretsOf, rejection, type ServiceProcess, startServiceProcess, tempShmDir } from '@p2p/testing';
import { errnoName, EventLog, rawClient, registryState, segmentNames, sleep } from '../dmabuf-registry/fixtures';
import { expectErrno, rpc } from '../harness/rpc';
import { startPlatformProcesses } from '../harness/platform-processes';

const ACCEL0 = '0000:07:00.0';
const NVME1 = '0000:08:00.0';
const NIC1 = '0000:09:00.0';
const BAR0 = 0;
const BAR2 = 2;
const CONFIG_REGION = 7;
const PCI_COMMAND = 0x04;
const PCI_COMMAND_MEMORY = 0x2;
const PCI_COMMAND_MASTER = 0x4;
const PCI_STATUS = 0x06;
const PCI_STATUS_CAP_LIST = 0x10;
const PCI_CAPABILITY_LIST = 0x34;
const PCI_CAP_ID_EXP = 0x10;
const PCI_EXP_DEVCAP = 0x04;
const PCI_EXP_DEVCAP_FLR = 0x1000_0000;
const PCI_EXP_DEVCTL = 0x08;
const PCI_EXP_DEVCTL_BCR_FLR = 0x8000;
const FEATURE_DMA_BUF = 11;
const GET = 1 << 16;
const O_RDWR = 2;
const KiB = 1024;
const SIZE = 64 * KiB;
const ACK_TIMEOUT_MS = 400;
/** How long a call to a dead peer may take before it counts as a hang. */
const NO_HANG_MS = 3000;
/** The delay a fault rule puts in front of a call, long enough to kill a process inside it. */
const FAULT_DELAY_MS = 500;
const { EventKind } = dmabuf;

const u16 = (value: number): Buffer => {
  const b = Buffer.alloc(2);
  b.writeUInt16LE(value);
  return b;
};

/** 'ok' if the promise resolves, else the errno of its failure (or the message, if it has none). */
async function outcome(promise: Promise<unknown>): Promise<string> {
  try {
    await promise;
    return 'ok';
  } catch (error) {
    return errnoName(error) ?? `no errno: ${error instanceof Error ? error.message : String(error)}`;
  }
}

/** `promise`, or a failure naming `what` if it takes longer than `ms`: a call to a dead peer must not hang. */
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

/** Polls `check` until it holds or `timeoutMs` passes; returns whether it held (for observations, not assertions). */
async function holdsWithin(check: () => boolean | Promise<boolean>, timeoutMs: number): Promise<boolean> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    if (await check()) return true;
    if (Date.now() > deadline) return false;
    await sleep(20);
  }
}

/** pci-emu's segment names are pci-emu.<instance>.<bar>...: the per-start instance tag. */
function instanceTag(segment: string): string {
  const match = /^pci-emu\.([0-9a-f]+)\./.exec(segment);
  if (match === null) throw new Error(`${segment} is not a pci-emu segment name`);
  return match[1]!;
}

/** `length` bytes at `offset` of a segment file, read straight from the directory (undefined once unlinked). */
function segmentBytes(dir: string, segment: string, offset: number, length: number): Buffer | undefined {
  let fd: number;
  try {
    fd = fs.openSync(path.join(dir, segment), 'r');
  } catch {
    return undefined;
  }
  try {
    const out = Buffer.alloc(length);
    fs.readSync(fd, out, 0, length, offset);
    return out;
  } finally {
    fs.closeSync(fd);
  }
}

/** A JSON line of the device-owner helper: an answer, or its ready line. */
interface Reply {
  readonly ok?: boolean;
  readonly event?: string;
  readonly errno?: string;
  readonly [key: string]: unknown;
}

/**
 * tests/dist/vfio-pci/processes/device-owner.js as a child process: a driver
 * process holding a vfio device fd, that can be SIGKILLed for real.
 */
class DeviceOwnerProcess {
  readonly child: ChildProcess;
  readonly stderr: string[] = [];
  readonly exited: Promise<void>;
  readonly #waiters: Array<{ resolve: (reply: Reply) => void; reject: (error: Error) => void }> = [];
  #ready!: (reply: Reply) => void;
  readonly ready: Promise<Reply>;

  constructor(args: string[]) {
    this.child = spawn(process.execPath, [path.join(__dirname, 'processes', 'device-owner.js'), ...args], { stdio: ['pipe', 'pipe', 'pipe'] });
    this.child.stderr!.on('data', (chunk: Buffer) => this.stderr.push(chunk.toString()));
    this.ready = new Promise((resolve) => (this.#ready = resolve));
    this.exited = new Promise((resolve) => this.child.once('exit', () => resolve()));
    readline.createInterface({ input: this.child.stdout! }).on('line', (line) => {
      const reply = JSON.parse(line) as Reply;
      if (reply.event === 'ready') this.#ready(reply);
      else this.#waiters.shift()?.resolve(reply);
    });
    void this.exited.then(() => {
      for (const waiter of this.#waiters.splice(0)) waiter.reject(new Error(`device-owner exited:\n${this.stderr.join('')}`));
    });
  }

  get alive(): boolean {
    return this.child.exitCode === null && this.child.signalCode === null;
  }

  /** Sends one command; its answer comes back through the returned promise. */
  command(line: string): Promise<Reply> {
    return new Promise((resolve, reject) => {
      this.#waiters.push({ resolve, reject });
      this.child.stdin!.write(`${line}\n`);
    });
  }

  async kill(): Promise<void> {
    if (this.alive) this.child.kill('SIGKILL');
    await this.exited;
  }
}

/**
 * Fault injection against vfio-pci with pci-emu, dmabuf-registry and vfio-pci
 * each its own process: the hardware service restarted under an open device,
 * vfio-pci itself killed while its dma-bufs are imported, the owning process
 * killed around an export (at the end of it and inside it, held there by
 * fault rules), and resets under a mapped (and a pinned) importer. Every test
 * checks what a user sees: errnos instead of hangs, importers told of every
 * move and never left writing into memory nobody reads, and nothing left
 * behind in bufinfo, the process listing, vfio's device listing or the
 * segment directory.
 */
describe('vfio-pci under faults (pci-emu, registry and vfio-pci as processes)', function () {
  this.timeout(30_000);

  let shmDir: string;
  let env: NodeJS.ProcessEnv;
  let pciEmu: ServiceProcess;
  let registry: ServiceProcess;
  let vfioPci: ServiceProcess;
  let client: vfio.VfioPciServiceClient;
  let pciClient: pci.PciEmuServiceClient;
  let raw: dmabuf.DmaBufRegistryServiceClient;
  let events: EventLog;
  let sessions: RegistrySession[];
  let children: DeviceOwnerProcess[];
  let closers: Array<() => void>;

  const vfioEnv = (): NodeJS.ProcessEnv => ({ ...env, PCI_EMU_ADDRESS: pciEmu.address, DMABUF_REGISTRY_ADDRESS: registry.address, VFIO_PCI_CONNECT_TIMEOUT_MS: '5000' });

  beforeEach(async () => {
    sessions = [];
    children = [];
    closers = [];
    shmDir = tempShmDir();
    env = { P2P_SHM_DIR: shmDir, LOG_LEVEL: 'warn', DMABUF_REGISTRY_ACK_TIMEOUT_MS: String(ACK_TIMEOUT_MS) };
    ({ pciEmu, registry } = await startPlatformProcesses(env));
    vfioPci = await startServiceProcess('vfio-pci', 'VFIO_PCI', { env: vfioEnv() });
    // The test drives vfio-pci and the hardware as the administrator.
    const admin = asAdmin(shmDir);
    client = new vfio.VfioPciServiceClient(vfioPci.address, admin.credentials, admin.options);
    pciClient = new pci.PciEmuServiceClient(pciEmu.address, admin.credentials, admin.options);
    raw = rawClient(registry.address, shmDir);
    events = await EventLog.open(registry.address, shmDir);
  });

  afterEach(async () => {
    await Promise.all(children.map((child) => child.kill()));
    await Promise.all(sessions.map((session) => session.close().catch(() => undefined)));
    for (const close of closers) close();
    events?.close();
    raw?.close();
    client?.close();
    pciClient?.close();
    // vfio-pci first (it exits with the registry anyway), pci-emu last and gracefully, so it unlinks its segments.
    await vfioPci?.stop('SIGKILL');
    await registry?.stop('SIGKILL');
    await pciEmu?.stop('SIGTERM');
    fs.rmSync(shmDir, { recursive: true, force: true });
  });

  /* ---- helpers ---- */

  /** A process; the NIC driver's ('rdma-nic') is the platform's, and imports from other processes' fd tables. */
  async function open(name: string): Promise<RegistrySession> {
    const privilegedCredential = name === 'rdma-nic' ? platformSecretsOf(shmDir).platformToken : undefined;
    const session = await RegistrySession.open(registry.address, { name, shmDir, privilegedCredential });
    sessions.push(session);
    return session;
  }

  const bind = (bdf: string, variants?: vfio.Variants): Promise<vfio.BindResponse> => rpc((cb) => client.bind({ bdf, variants }, cb));
  const openDevice = async (pid: number, bdf: string): Promise<number> => (await rpc<vfio.OpenDeviceResponse>((cb) => client.openDevice({ pid, bdf }, cb))).fd;
  const exportRange = async (pid: number, deviceFd: number, offset: number, length: number): Promise<number> =>
    (
      await rpc<vfio.DeviceFeatureResponse>((cb) =>
        client.deviceFeature(
          {
            pid,
            deviceFd,
            argsz: 0,
            flags: GET | FEATURE_DMA_BUF,
            payload: { $case: 'dmaBuf', value: { regionIndex: BAR2, openFlags: O_RDWR, flags: 0, dmaRanges: [{ offset: BigInt(offset), length: BigInt(length) }] } },
          },
          cb,
        ),
      )
    ).fd;
  const regionRead = async (pid: number, deviceFd: number, index: number, offset: number, count: number): Promise<Buffer> =>
    (await rpc<vfio.RegionReadResponse>((cb) => client.regionRead({ pid, deviceFd, index, offset: BigInt(offset), count }, cb))).data;
  const regionWrite = (pid: number, deviceFd: number, index: number, offset: number, data: Buffer): Promise<vfio.RegionWriteResponse> =>
    rpc((cb) => client.regionWrite({ pid, deviceFd, index, offset: BigInt(offset), data }, cb));
  const configRead = async (pid: number, deviceFd: number, offset: number, width: 1 | 2 | 4): Promise<number> => {
    const data = await regionRead(pid, deviceFd, CONFIG_REGION, offset, width);
    return width === 1 ? data.readUInt8(0) : width === 2 ? data.readUInt16LE(0) : data.readUInt32LE(0);
  };
  const reset = (pid: number, deviceFd: number): Promise<vfio.ResetResponse> => rpc((cb) => client.reset({ pid, deviceFd }, cb));
  const deviceInfo = (pid: number, deviceFd: number): Promise<vfio.GetDeviceInfoResponse> => rpc((cb) => client.getDeviceInfo({ pid, deviceFd }, cb));
  const listDevices = (): Promise<vfio.ListDevicesResponse> => rpc((cb) => client.listDevices({}, cb));
  const deviceListing = async (bdf: string): Promise<vfio.DeviceListing | undefined> => (await listDevices()).devices.find((d) => d.bdf === bdf);
  const getFunction = async (bdf: string): Promise<pci.FunctionInfo> => (await rpc<pci.GetFunctionResponse>((cb) => pciClient.getFunction({ bdf }, cb))).function!;
  const bufInfo = async (bufferId: bigint): Promise<dmabuf.BufInfo | undefined> => (await registryState(raw)).buffers.find((b) => b.bufferId === bufferId);
  const vfioBuffers = async (): Promise<dmabuf.BufInfo[]> => (await registryState(raw)).buffers.filter((b) => b.exporter === 'vfio-pci');
  const processListed = async (pid: number): Promise<dmabuf.ProcessInfo | undefined> => (await registryState(raw)).processes.processes.find((p) => p.pid === pid);

  /** A NIC driver's dynamic import of `fd` (held by `holderPid`), recording every move_notify it gets. */
  async function importInto(nic: RegistrySession, fd: number, holderPid: number, importerBdf = NIC1): Promise<{ importer: DmaBufImporter; notices: MoveNotice[] }> {
    const notices: MoveNotice[] = [];
    const importer = await nic.importDmaBuf({ fd, holderPid, importerBdf, onMoveNotify: (notice) => void notices.push(notice) });
    return { importer, notices };
  }

  /** The FaultInjectionService of a service; closed after the test. */
  function faultClient(service: ServiceProcess): fault.FaultInjectionServiceClient {
    const admin = asAdmin(shmDir);
    const faults = new fault.FaultInjectionServiceClient(service.address, admin.credentials, admin.options);
    closers.push(() => faults.close());
    return faults;
  }

  /** One delay rule on `method`, for one call only. */
  async function delayOnce(faults: fault.FaultInjectionServiceClient, method: string, delayMs: number): Promise<string> {
    const added = await rpc<fault.AddFaultRuleResponse>((cb) =>
      faults.addFaultRule({ rule: { id: '', methodPattern: method, delay: { delayMs, percentage: 100 }, abort: undefined, maxActivations: 1, activations: 0n } }, cb),
    );
    return added.rule!.id;
  }

  async function activations(faults: fault.FaultInjectionServiceClient, id: string): Promise<number> {
    const { rules } = await rpc<fault.ListFaultRulesResponse>((cb) => faults.listFaultRules({}, cb));
    return Number(rules.find((rule) => rule.id === id)?.activations ?? 0n);
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

  /** A driver process of its own that opens `bdf` through vfio-pci; SIGKILLed after the test at the latest. */
  async function spawnDeviceOwner(name: string, bdf: string): Promise<{ owner: DeviceOwnerProcess; pid: number; deviceFd: number }> {
    const owner = new DeviceOwnerProcess([registry.address, vfioPci.address, shmDir, name, bdf]);
    children.push(owner);
    const ready = await within(
      10_000,
      'the device-owner helper',
      Promise.race([owner.ready, owner.exited.then(() => Promise.reject(new Error(`device-owner exited before ready:\n${owner.stderr.join('')}`)))]),
    );
    return { owner, pid: ready['pid'] as number, deviceFd: ready['deviceFd'] as number };
  }

  /**
   * pci_find_capability() through the device fd: walk the config region's
   * capability list from PCI_CAPABILITY_LIST (0x34) to the capability `id`.
   */
  async function findCapability(pid: number, deviceFd: number, id: number): Promise<number | undefined> {
    if (((await configRead(pid, deviceFd, PCI_STATUS, 2)) & PCI_STATUS_CAP_LIST) === 0) return undefined;
    let pos = await configRead(pid, deviceFd, PCI_CAPABILITY_LIST, 1);
    for (let ttl = 48; ttl > 0 && pos >= 0x40; ttl--) {
      pos &= ~3;
      if ((await configRead(pid, deviceFd, pos, 1)) === id) return pos;
      pos = await configRead(pid, deviceFd, pos + 1, 1);
    }
    return undefined;
  }

  /**
   * Every session closed (process exit closes its fds), then: no process but
   * vfio-pci's own (holding nothing) and no buffer in the registry, no device
   * open and no dma-buf in vfio-pci, vfio-pci still a live owner, and no
   * segment file but pci-emu's BAR memory.
   */
  async function expectNothingLeft(): Promise<void> {
    await Promise.all(sessions.map((session) => session.close().catch(() => undefined)));
    // vfio-pci's own session, which pins process memory for iommufd, lives as long as vfio-pci does.
    const applications = (listed: dmabuf.ListProcessesResponse): dmabuf.ProcessInfo[] => listed.processes.filter((p) => p.name !== 'vfio-pci');
    await eventually('every process to exit', async () => applications((await registryState(raw)).processes).length === 0);
    await eventually('every buffer to be released', async () => (await registryState(raw)).buffers.length === 0);
    await eventually('every device to be closed', async () => (await listDevices()).devices.every((d) => d.openCount === 0));
    const listing = await listDevices();
    expect(listing.devices.map((d) => [d.bdf, d.openCount, d.ownerPid, d.dmaBufs]), 'vfio devices after every session closed').to.deep.equal(
      listing.devices.map((d) => [d.bdf, 0, 0, 0]),
    );
    expect(listing.dmaBufs, 'vfio dma-bufs after every session closed').to.deep.equal([]);
    const state = await registryState(raw);
    expect(state.processes.owners, 'live owners').to.include('vfio-pci');
    expect(state.processes.processes.map((p) => [p.name, p.fds.length, p.vmaCount, p.pinCount]), "vfio-pci's own session").to.deep.equal([['vfio-pci', 0, 0, 0]]);
    expect(
      segmentNames(shmDir).filter((name) => !name.startsWith('pci-emu.')),
      'segment files other than pci-emu BAR memory',
    ).to.deep.equal([]);
  }

  /* ---- 1. pci-emu restarted under an open device ---- */

  interface BeforeCrash {
    readonly spdk: RegistrySession;
    readonly deviceFd: number;
    readonly bufferId: bigint;
    readonly importer: DmaBufImporter;
    readonly notices: MoveNotice[];
    /** The BAR2 segment file the importer mapped, of the instance that is killed. */
    readonly oldSegment: string;
    readonly oldTag: string;
    /** PCI_COMMAND and BAR0's first register as pci-emu powers on. */
    readonly powerOnCommand: number;
    readonly powerOnRegister: Buffer;
    /** PCI_COMMAND as the driver left it: bus mastering on. */
    readonly driverCommand: number;
  }

  /**
   * The common start of the pci-emu restart tests: spdk opens the
   * accelerator, turns bus mastering on and writes a BAR0 register, exports
   * 64 KiB of BAR2, and a NIC imports and maps it and writes `before` through
   * it; then pci-emu is SIGKILLed.
   */
  async function exportThenKillPciEmu(before: Buffer): Promise<BeforeCrash> {
    const powerOnCommand = (await rpc<pci.ConfigReadResponse>((cb) => pciClient.configRead({ bdf: ACCEL0, offset: PCI_COMMAND, width: 2 }, cb))).value;
    const spdk = await open('spdk');
    const nic = await open('rdma-nic');
    await bind(ACCEL0);
    const deviceFd = await openDevice(spdk.pid, ACCEL0);
    const powerOnRegister = await regionRead(spdk.pid, deviceFd, BAR0, 0, 4);
    await regionWrite(spdk.pid, deviceFd, BAR0, 0, Buffer.from([0xef, 0xbe, 0xad, 0xde]));
    expect(await regionRead(spdk.pid, deviceFd, BAR0, 0, 4)).to.deep.equal(Buffer.from([0xef, 0xbe, 0xad, 0xde]));
    const opened = await configRead(spdk.pid, deviceFd, PCI_COMMAND, 2);
    await regionWrite(spdk.pid, deviceFd, CONFIG_REGION, PCI_COMMAND, u16(opened | PCI_COMMAND_MASTER));
    const driverCommand = await configRead(spdk.pid, deviceFd, PCI_COMMAND, 2);
    expect(driverCommand & (PCI_COMMAND_MEMORY | PCI_COMMAND_MASTER)).to.equal(PCI_COMMAND_MEMORY | PCI_COMMAND_MASTER);

    const fd = await exportRange(spdk.pid, deviceFd, 0, SIZE);
    const { importer, notices } = await importInto(nic, fd, spdk.pid);
    const mapping = await importer.map();
    await importer.write(0, before);
    expect(await regionRead(spdk.pid, deviceFd, BAR2, 0, before.length), 'the NIC wrote into the BAR').to.deep.equal(before);
    const oldSegment = mapping.extents[0]!.segment;
    const oldTag = instanceTag(oldSegment);
    expect(segmentNames(shmDir)).to.include(oldSegment);
    await pciEmu.stop('SIGKILL');
    return { spdk, deviceFd, bufferId: importer.bufferId, importer, notices, oldSegment, oldTag, powerOnCommand, powerOnRegister, driverCommand };
  }

  /** pci-emu again on its old port and segment directory; waits until vfio-pci reaches it through `deviceFd`. */
  async function restartPciEmu(pid: number, deviceFd: number): Promise<void> {
    pciEmu = await startServiceProcess('pci-emu', 'PCI_EMU', { env, port: pciEmu.port });
    pciClient.close();
    const admin = asAdmin(shmDir);
    pciClient = new pci.PciEmuServiceClient(pciEmu.address, admin.credentials, admin.options);
    await eventually('vfio-pci to reach the restarted pci-emu', async () => (await outcome(configRead(pid, deviceFd, PCI_COMMAND, 2))) === 'ok', 15_000);
  }

  it('pci-emu killed (SIGKILL) under an open device: hardware calls fail fast, the device counts as surprise-removed (exports ENODEV, buffers revoked for good), and after the restart it is the new pci-emu\'s, at power-on state and on fresh segment files', async () => {
    const before = Buffer.from('written before the crash');
    const crash = await exportThenKillPciEmu(before);
    const { spdk, deviceFd, bufferId, oldSegment, oldTag } = crash;

    // While pci-emu is down: everything that reaches the hardware fails at once with EIO; the
    // device counts as surprise-removed, so a new export cannot take its registration (ENODEV, rule 10).
    const down: Array<[string, () => Promise<unknown>, string]> = [
      ['config read', () => configRead(spdk.pid, deviceFd, PCI_COMMAND, 2), 'EIO'],
      ['BAR read', () => regionRead(spdk.pid, deviceFd, BAR2, 0, 16), 'EIO'],
      ['DMA_BUF export', () => exportRange(spdk.pid, deviceFd, SIZE, SIZE), 'ENODEV'],
      ['VFIO_DEVICE_RESET', () => reset(spdk.pid, deviceFd), 'EIO'],
    ];
    for (const [what, call, expected] of down) {
      const error = await within(NO_HANG_MS, `${what} with pci-emu down`, rejection(call()));
      expect(errnoName(error), `${what} with pci-emu down: ${String(error)}`).to.equal(expected);
    }
    // Its buffers are revoked for good: they named memory of the dead instance.
    await eventually('the buffer to be orphaned', async () => (await bufInfo(bufferId))?.orphaned === true);
    // What needs no hardware still answers; the failed export left nothing behind.
    expect((await deviceInfo(spdk.pid, deviceFd)).numRegions).to.equal(9);
    expect((await vfioBuffers()).map((b) => b.bufferId)).to.deep.equal([bufferId]);
    expect((await listDevices()).dmaBufs.map((b) => b.bufferId)).to.deep.equal([bufferId]);
    // The removed device let go of its buffers (vfio_pci_dma_buf_cleanup): the fds live on, forgotten.
    expect((await deviceListing(ACCEL0))?.dmaBufs).to.equal(0);
    expect((await listDevices()).dmaBufs.find((b) => b.bufferId === bufferId)?.forgotten).to.equal(true);

    await restartPciEmu(spdk.pid, deviceFd);

    // The device is the new pci-emu's, at its power-on state: the driver's bus mastering and register are gone.
    const hardwareCommand = (await rpc<pci.ConfigReadResponse>((cb) => pciClient.configRead({ bdf: ACCEL0, offset: PCI_COMMAND, width: 2 }, cb))).value;
    const command = await configRead(spdk.pid, deviceFd, PCI_COMMAND, 2);
    expect(command, 'PCI_COMMAND through vfio vs the new pci-emu').to.equal(hardwareCommand);
    expect(command, 'PCI_COMMAND after the restart vs at power-on').to.equal(crash.powerOnCommand);
    expect(command & PCI_COMMAND_MASTER, 'bus mastering after the restart').to.equal(0);
    expect((await getFunction(ACCEL0)).busMaster).to.equal(false);
    if ((command & PCI_COMMAND_MEMORY) === 0) {
      // Without firmware enabling decode, BAR access is refused until the driver sets MEM again.
      await expectErrno(regionRead(spdk.pid, deviceFd, BAR2, 0, 16), 'EIO');
      await regionWrite(spdk.pid, deviceFd, CONFIG_REGION, PCI_COMMAND, u16(command | PCI_COMMAND_MEMORY));
    }
    expect(await regionRead(spdk.pid, deviceFd, BAR0, 0, 4), 'BAR0 register after the restart').to.deep.equal(crash.powerOnRegister);
    expect(await regionRead(spdk.pid, deviceFd, BAR2, 0, before.length), 'BAR2 of the restarted pci-emu').to.deep.equal(Buffer.alloc(before.length));

    // Fresh segment files under a new instance tag: a stale mapping's file is never handed out again.
    const { extents } = await rpc<pci.GetBarSegmentsResponse>((cb) => pciClient.getBarSegments({ bdf: ACCEL0, bar: BAR2, offset: 0n, length: BigInt(SIZE) }, cb));
    const newTag = instanceTag(extents[0]!.segment);
    expect(newTag, 'instance tag of the restarted pci-emu').to.not.equal(oldTag);
    expect(extents.map((e) => e.segment)).to.not.include(oldSegment);

    // Graceful shutdown unlinks the instance's own segments (what SIGKILL could not do for the old one).
    await expectNothingLeft();
    await pciEmu.stop('SIGTERM');
    expect(segmentNames(shmDir).filter((name) => name.startsWith(`pci-emu.${newTag}.`)), 'segments of the instance stopped with SIGTERM').to.deep.equal([]);
  });

  it('pci-emu killed (SIGKILL) under a mapped importer: the importer is told, and no write of it lands in the dead incarnation\'s memory', async () => {
    const before = Buffer.from('written before the crash');
    const { spdk, deviceFd, bufferId, importer, notices, oldSegment, oldTag } = await exportThenKillPciEmu(before);
    await restartPciEmu(spdk.pid, deviceFd);
    const command = await configRead(spdk.pid, deviceFd, PCI_COMMAND, 2);
    if ((command & PCI_COMMAND_MEMORY) === 0) await regionWrite(spdk.pid, deviceFd, CONFIG_REGION, PCI_COMMAND, u16(command | PCI_COMMAND_MEMORY));

    // What the importer does once the hardware behind its buffer is a new incarnation. Correct: it
    // was told (move_notify) and dropped its mapping of the dead instance's files; a write then either
    // fails (ENODEV, revoked) or faults in a new mapping and reaches the device's memory.
    const told = await holdsWithin(() => notices.length > 0, 2000);
    const info = await bufInfo(bufferId);
    const mapped = importer.mapped ? (await importer.map()).extents.map((e) => e.segment) : [];
    const after = Buffer.from('written after the restart');
    const write = await outcome(importer.write(0, after));
    const onDevice = await regionRead(spdk.pid, deviceFd, BAR2, 0, after.length);
    const inDeadFile = segmentBytes(shmDir, oldSegment, 0, after.length);
    const observed = {
      toldByMoveNotify: told,
      mappingOnDeadInstanceFiles: mapped.some((segment) => instanceTag(segment) === oldTag),
      writeLostSilently: write === 'ok' && !onDevice.equals(after),
      writeLandedInDeadInstanceFile: inDeadFile?.equals(after) ?? false,
    };
    expect(
      observed,
      `importer of buffer ${bufferId} after pci-emu restarted: write ${write}, revoked ${info?.revoked}, orphaned ${info?.orphaned}, ` +
        `mapped ${JSON.stringify(mapped)}, old segment ${oldSegment} ${inDeadFile === undefined ? 'unlinked' : 'still on disk'}, device reads ${JSON.stringify(onDevice.toString())}`,
    ).to.deep.equal({ toldByMoveNotify: true, mappingOnDeadInstanceFiles: false, writeLostSilently: false, writeLandedInDeadInstanceFile: false });
    await importer.detach().catch(() => undefined);
    await expectNothingLeft();
  });

  /* ---- 2. vfio-pci killed while its buffers are imported ---- */

  it('vfio-pci killed (SIGKILL) while its dma-buf is imported: importers are told and ack, the buffer is orphaned, re-map fails ENODEV, the fds close cleanly, nothing leaks, and a restarted vfio-pci binds and opens again', async () => {
    const spdk = await open('spdk');
    const nic = await open('rdma-nic');
    await bind(ACCEL0);
    const deviceFd = await openDevice(spdk.pid, ACCEL0);
    const fd = await exportRange(spdk.pid, deviceFd, 0, SIZE);
    const { importer, notices } = await importInto(nic, fd, spdk.pid);
    const bufferId = importer.bufferId;
    await importer.write(0, Buffer.from('before'));
    expect(importer.mapped).to.equal(true);
    const pciSegments = segmentNames(shmDir);
    expect((await registryState(raw)).processes.owners).to.include('vfio-pci');

    const port = vfioPci.port;
    await vfioPci.stop('SIGKILL');

    // The registry sees the owner session end: a permanent revoke, the importer told and acking.
    await eventually('the importer to get move_notify', () => notices.length === 1);
    expect(notices[0]!.bufferId).to.equal(bufferId);
    expect(importer.mapped).to.equal(false);
    await events.waitFor(EventKind.EVENT_KIND_REVOKE, { bufferId });
    await events.waitFor(EventKind.EVENT_KIND_ACK, { bufferId, attachmentId: importer.attachmentId });
    expect(events.of(EventKind.EVENT_KIND_FENCE), 'fences').to.deep.equal([]);
    expect(events.of(EventKind.EVENT_KIND_MOVE_NOTIFY, { bufferId })).to.have.length(1);
    const buffer = (await bufInfo(bufferId))!;
    expect([buffer.revoked, buffer.orphaned]).to.deep.equal([true, true]);
    expect((await registryState(raw)).processes.owners).to.not.include('vfio-pci');

    // Re-map and a new import fail with ENODEV; nothing was fenced, nothing reads stale memory.
    expect(await rejection(importer.map())).to.be.instanceOf(ErrnoError).with.property('errno', 'ENODEV');
    expect(await rejection(importer.read(0, 6))).to.be.instanceOf(ErrnoError).with.property('errno', 'ENODEV');
    expect(errnoName(await rejection(nic.importDmaBuf({ fd, holderPid: spdk.pid, importerBdf: NIC1 })))).to.equal('ENODEV');

    // The fds in spdk's table close cleanly (the device file's release has nobody to go to), then the attachment.
    const spdkFds = (await processListed(spdk.pid))!.fds;
    expect(spdkFds.map((f) => [f.fd, f.owner]).sort()).to.deep.equal([[deviceFd, 'vfio-pci'], [fd, 'vfio-pci']].sort());
    await spdk.closeFd(deviceFd);
    await spdk.closeFd(fd);
    expect((await processListed(spdk.pid))!.fds).to.deep.equal([]);
    expect((await bufInfo(bufferId))!.refcount, 'the attachment alone holds the buffer').to.equal(1);
    await importer.detach();
    await eventually('the orphaned buffer to go', async () => (await bufInfo(bufferId)) === undefined);
    expect(events.of(EventKind.EVENT_KIND_RELEASE, { bufferId })).to.have.length(1);
    expect(segmentNames(shmDir), 'segment files').to.deep.equal(pciSegments);

    // vfio-pci again (same port): bind, open, export and import work.
    vfioPci = await startServiceProcess('vfio-pci', 'VFIO_PCI', { env: vfioEnv(), port });
    await eventually('vfio-pci to register with the registry again', async () => (await registryState(raw)).processes.owners.includes('vfio-pci'));
    await bind(ACCEL0);
    const again = await openDevice(spdk.pid, ACCEL0);
    const fd2 = await exportRange(spdk.pid, again, 0, SIZE);
    const second = await importInto(nic, fd2, spdk.pid);
    // The BAR memory survived vfio-pci's death: it is pci-emu's.
    expect((await second.importer.read(0, 6)).toString()).to.equal('before');
    await second.importer.detach();
    await spdk.closeFd(fd2);
    await spdk.closeFd(again);
    await expectNothingLeft();
  });

  it('a device fd left over from a killed vfio-pci does not reach a device the restarted vfio-pci opened for another process', async () => {
    const spdk = await open('spdk');
    const nic = await open('rdma-nic');
    await bind(ACCEL0);
    const deviceFd = await openDevice(spdk.pid, ACCEL0);
    const port = vfioPci.port;
    await vfioPci.stop('SIGKILL');
    await eventually('the registry to drop the vfio-pci owner', async () => !(await registryState(raw)).processes.owners.includes('vfio-pci'));
    vfioPci = await startServiceProcess('vfio-pci', 'VFIO_PCI', { env: vfioEnv(), port });
    await eventually('vfio-pci to register with the registry again', async () => (await registryState(raw)).processes.owners.includes('vfio-pci'));

    // The NIC's process opens the accelerator in the new incarnation; spdk still holds its old fd.
    await bind(ACCEL0);
    const nicFd = await openDevice(nic.pid, ACCEL0);
    const [stale, fresh] = await Promise.all([spdk.resolveFd(deviceFd), nic.resolveFd(nicFd)]);
    const command = await configRead(nic.pid, nicFd, PCI_COMMAND, 2);

    // The old fd is a file of the dead incarnation: no ioctl through it may reach the device another process owns now.
    const observed = {
      getDeviceInfo: await outcome(deviceInfo(spdk.pid, deviceFd)),
      configRead: await outcome(configRead(spdk.pid, deviceFd, PCI_COMMAND, 2)),
      configWrite: await outcome(regionWrite(spdk.pid, deviceFd, CONFIG_REGION, PCI_COMMAND, u16(command & ~PCI_COMMAND_MEMORY))),
      reset: await outcome(reset(spdk.pid, deviceFd)),
    };
    const commandAfter = await configRead(nic.pid, nicFd, PCI_COMMAND, 2);
    const refused = (result: string): boolean => ['EBADF', 'ENODEV', 'ENOTTY', 'EIO'].includes(result);
    expect(
      { ...Object.fromEntries(Object.entries(observed).map(([call, result]) => [call, refused(result)])), nicsCommandUnchanged: commandAfter === command },
      `calls through pid ${spdk.pid}'s stale fd ${deviceFd} (handle ${stale.handle}, file ${stale.fileId}) while pid ${nic.pid} holds fd ${nicFd} (handle ${fresh.handle}, file ${fresh.fileId}): ${JSON.stringify(observed)}`,
    ).to.deep.equal({ getDeviceInfo: true, configRead: true, configWrite: true, reset: true, nicsCommandUnchanged: true });
    await spdk.closeFd(deviceFd);
    await nic.closeFd(nicFd);
    await expectNothingLeft();
  });

  /* ---- 3. the owning process killed around an export ---- */

  it('the owning process killed (SIGKILL) after its export, with a NIC importer mapped: the importer is told, the device is free again, and the buffer goes when the importer lets go', async () => {
    await bind(ACCEL0);
    const { owner, pid, deviceFd } = await spawnDeviceOwner('spdk-child', ACCEL0);
    const exported = await owner.command(`export ${BAR2} 0 ${SIZE}`);
    expect(exported.ok, JSON.stringify(exported)).to.equal(true);
    const fd = exported['fd'] as number;
    const nic = await open('rdma-nic');
    const { importer, notices } = await importInto(nic, fd, pid);
    const bufferId = importer.bufferId;
    await importer.write(0, Buffer.from('nic data'));
    expect((await processListed(pid))!.fds.map((f) => f.fd).sort()).to.deep.equal([deviceFd, fd].sort());
    expect(await deviceListing(ACCEL0)).to.include({ openCount: 1, ownerPid: pid, dmaBufs: 1 });

    await owner.kill();

    // Process exit closed both fds: the device file's release closed the device, which revoked its buffer for good.
    await events.waitFor(EventKind.EVENT_KIND_PROCESS_EXIT, { pid });
    expect(await processListed(pid), 'the dead process in ListProcesses').to.equal(undefined);
    await eventually('the importer to get move_notify', () => notices.length === 1);
    await eventually('the device to be closed', async () => (await deviceListing(ACCEL0))?.openCount === 0);
    expect(await deviceListing(ACCEL0)).to.include({ openCount: 0, ownerPid: 0, dmaBufs: 0 });
    const buffer = (await bufInfo(bufferId))!;
    expect([buffer.revoked, buffer.orphaned, buffer.refcount]).to.deep.equal([true, true, 1]);
    expect(await rejection(importer.read(0, 8))).to.be.instanceOf(ErrnoError).with.property('errno', 'ENODEV');
    expect(events.of(EventKind.EVENT_KIND_FENCE), 'fences').to.deep.equal([]);

    // Another process can take the device; the importer letting go releases the buffer.
    const spdk2 = await open('spdk-2');
    const fd2 = await openDevice(spdk2.pid, ACCEL0);
    await importer.detach();
    await eventually('the buffer to be released', async () => (await bufInfo(bufferId)) === undefined);
    expect((await listDevices()).dmaBufs, 'vfio dma-bufs').to.deep.equal([]);
    await spdk2.closeFd(fd2);
    await expectNothingLeft();
  });

  const killedInside: Array<[string, () => ServiceProcess, string]> = [
    ['vfio-pci\'s DeviceFeature (before the handler runs)', () => vfioPci, '/p2p.vfio.v1.VfioPciService/DeviceFeature'],
    ['the export itself (after its fds were resolved, while vfio-pci waits on pci-emu\'s GetFunction)', () => pciEmu, '/p2p.pci.v1.PciEmuService/GetFunction'],
  ];
  for (const [where, service, method] of killedInside) {
    it(`the owning process killed (SIGKILL) inside ${where}: no dma-buf of it survives, it is gone from ListProcesses, and the device is free with dma_bufs 0`, async () => {
      await bind(ACCEL0);
      const { owner, pid } = await spawnDeviceOwner('spdk-child', ACCEL0);
      const faults = faultClient(service());
      const rule = await delayOnce(faults, method, FAULT_DELAY_MS);

      const sent = Date.now();
      const answer = owner.command(`export ${BAR2} 0 ${SIZE}`).catch(() => undefined);
      await eventually(`the export to be held at ${method}`, async () => (await activations(faults, rule)) === 1, 5000);
      await owner.kill();
      // The call was held no earlier than it was sent: the kill landed inside the delay.
      expect(Date.now() - sent, 'kill after the call was sent (ms)').to.be.below(FAULT_DELAY_MS);
      expect(await answer, 'the killed process never got its fd').to.equal(undefined);

      // Past the delay, the export ran on or failed; either way nothing of the dead process may remain.
      await events.waitFor(EventKind.EVENT_KIND_PROCESS_EXIT, { pid });
      await sleep(Math.max(0, sent + FAULT_DELAY_MS + 200 - Date.now()));
      await eventually('the device to be closed', async () => (await deviceListing(ACCEL0))?.openCount === 0);
      await eventually('no vfio dma-buf left', async () => (await vfioBuffers()).length === 0);
      expect(await processListed(pid), 'the dead process in ListProcesses').to.equal(undefined);
      expect(await deviceListing(ACCEL0)).to.include({ openCount: 0, ownerPid: 0, dmaBufs: 0 });
      expect((await listDevices()).dmaBufs, 'vfio dma-bufs').to.deep.equal([]);
      // An export that did complete after the death was closed by the exit and released exactly once.
      for (const exported of events.of(EventKind.EVENT_KIND_EXPORT, { pid })) {
        expect(events.of(EventKind.EVENT_KIND_RELEASE, { bufferId: exported.bufferId }), `releases of buffer ${exported.bufferId}`).to.have.length(1);
      }

      // The device is free: another process opens it and exports.
      const spdk2 = await open('spdk-2');
      const fd2 = await openDevice(spdk2.pid, ACCEL0);
      const buf = await exportRange(spdk2.pid, fd2, 0, SIZE);
      await spdk2.closeFd(buf);
      await spdk2.closeFd(fd2);
      await expectNothingLeft();
    });
  }

  /* ---- 4. resets under a mapped importer ---- */

  it('VFIO_DEVICE_RESET and an FLR through config space under a mapped importer: revoke then restore each, the bytes survive, and a re-map reads them', async () => {
    const spdk = await open('spdk');
    const nic = await open('rdma-nic');
    await bind(ACCEL0);
    const deviceFd = await openDevice(spdk.pid, ACCEL0);
    const fd = await exportRange(spdk.pid, deviceFd, 0, SIZE);
    const { importer, notices } = await importInto(nic, fd, spdk.pid);
    const bufferId = importer.bufferId;
    const data = Buffer.from('survives resets');
    await importer.write(4 * KiB, data);
    const pciEvents = await watchPci();
    const moves = (): string[] =>
      events.events
        .filter((e) => e.bufferId === bufferId && [EventKind.EVENT_KIND_REVOKE, EventKind.EVENT_KIND_UNREVOKE, EventKind.EVENT_KIND_MOVE_NOTIFY, EventKind.EVENT_KIND_ACK].includes(e.kind))
        .map((e) => EventKind[e.kind].replace('EVENT_KIND_', ''));
    const resets = (): string[] => pciEvents.filter((e) => e.bdf === ACCEL0 && e.event?.$case === 'reset').map((e) => (e.event?.$case === 'reset' ? pci.ResetKind[e.event.value.kind] : ''));
    const command = await configRead(spdk.pid, deviceFd, PCI_COMMAND, 2);
    expect(command & PCI_COMMAND_MEMORY).to.equal(PCI_COMMAND_MEMORY);

    // VFIO_DEVICE_RESET.
    let generation = (await importer.map()).generation;
    await reset(spdk.pid, deviceFd);
    expect(notices, 'move_notify after VFIO_DEVICE_RESET').to.have.length(2);
    await eventually('the events of the reset', () => moves().length === 6);
    expect(moves()).to.deep.equal(['REVOKE', 'MOVE_NOTIFY', 'ACK', 'UNREVOKE', 'MOVE_NOTIFY', 'ACK']);
    expect(importer.mapped).to.equal(false);
    expect(await importer.read(4 * KiB, data.length), 'bytes after VFIO_DEVICE_RESET, through a re-map').to.deep.equal(data);
    let remapped = (await importer.map()).generation;
    expect(remapped > generation, 'a new mapping generation').to.equal(true);
    generation = remapped;
    expect(await configRead(spdk.pid, deviceFd, PCI_COMMAND, 2), 'PCI_COMMAND restored after the reset').to.equal(command);
    await eventually('pci-emu\'s reset event', () => resets().length === 1);

    // FLR: PCI_EXP_DEVCTL_BCR_FLR written to the Express capability's DevCtl, found by walking the list from 0x34.
    const exp = await findCapability(spdk.pid, deviceFd, PCI_CAP_ID_EXP);
    expect(exp, 'the PCI Express capability').to.not.equal(undefined);
    expect((await configRead(spdk.pid, deviceFd, exp! + PCI_EXP_DEVCAP, 4)) & PCI_EXP_DEVCAP_FLR, 'DevCap FLR').to.not.equal(0);
    const devctl = await configRead(spdk.pid, deviceFd, exp! + PCI_EXP_DEVCTL, 2);
    await regionWrite(spdk.pid, deviceFd, CONFIG_REGION, exp! + PCI_EXP_DEVCTL, u16(devctl | PCI_EXP_DEVCTL_BCR_FLR));
    expect(notices, 'move_notify after the FLR').to.have.length(4);
    await eventually('the events of the FLR', () => moves().length === 12);
    expect(moves().slice(6)).to.deep.equal(['REVOKE', 'MOVE_NOTIFY', 'ACK', 'UNREVOKE', 'MOVE_NOTIFY', 'ACK']);
    await eventually('pci-emu\'s FLR event', () => resets().length === 2);
    expect(resets()[1]).to.equal('RESET_KIND_FLR');
    expect(await configRead(spdk.pid, deviceFd, exp! + PCI_EXP_DEVCTL, 2), 'DevCtl after the FLR (BCR_FLR reads 0)').to.equal(devctl & ~PCI_EXP_DEVCTL_BCR_FLR);
    expect(await configRead(spdk.pid, deviceFd, PCI_COMMAND, 2), 'PCI_COMMAND restored after the FLR').to.equal(command);
    expect(await importer.read(4 * KiB, data.length), 'bytes after the FLR, through a re-map').to.deep.equal(data);
    remapped = (await importer.map()).generation;
    expect(remapped > generation, 'a new mapping generation').to.equal(true);
    expect(events.of(EventKind.EVENT_KIND_FENCE), 'fences').to.deep.equal([]);
    expect(notices.every((n) => n.bufferId === bufferId && n.attachmentId === importer.attachmentId)).to.equal(true);

    await importer.detach();
    await spdk.closeFd(fd);
    await spdk.closeFd(deviceFd);
    await expectNothingLeft();
  });

  it('VFIO_DEVICE_RESET under the pin variant fails with EINVAL while an importer holds a pin, telling nobody, and resets once it is unpinned', async () => {
    const spdk = await open('spdk');
    const nic = await open('rdma-nic');
    await bind(NVME1, { dmaBufLayout: vfio.DmaBufLayout.DMA_BUF_LAYOUT_UNSPECIFIED, allowPin: true, cpuMmap: false });
    expect((await deviceListing(NVME1))?.variants?.allowPin).to.equal(true);
    const deviceFd = await openDevice(spdk.pid, NVME1);
    const fd = await exportRange(spdk.pid, deviceFd, 0, SIZE);
    const { importer, notices } = await importInto(nic, fd, spdk.pid);
    const bufferId = importer.bufferId;
    const data = Buffer.from('in the CMB');
    await importer.write(0, data);
    await importer.pin();
    expect((await listDevices()).dmaBufs.find((b) => b.bufferId === bufferId)?.pins).to.equal(1);

    await expectErrno(reset(spdk.pid, deviceFd), 'EINVAL');
    expect(notices, 'move_notify for a refused reset').to.deep.equal([]);
    expect(events.of(EventKind.EVENT_KIND_REVOKE, { bufferId })).to.deep.equal([]);
    expect(importer.mapped, 'still mapped').to.equal(true);
    expect(await importer.read(0, data.length)).to.deep.equal(data);
    expect((await bufInfo(bufferId))!.revoked).to.equal(false);

    await importer.unpin();
    expect((await listDevices()).dmaBufs.find((b) => b.bufferId === bufferId)?.pins).to.equal(0);
    await reset(spdk.pid, deviceFd);
    expect(notices, 'move_notify of the reset once unpinned').to.have.length(2);
    expect(await importer.read(0, data.length), 'CMB bytes after the reset').to.deep.equal(data);

    await importer.detach();
    await spdk.closeFd(fd);
    await spdk.closeFd(deviceFd);
    await expectNothingLeft();
  });
});
