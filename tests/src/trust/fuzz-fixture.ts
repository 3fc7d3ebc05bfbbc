import { credentials, type Interceptor } from '@grpc/grpc-js';
import { bearerInterceptor } from '@p2p/auth';
import { RegistrySession } from '@p2p/dmabuf-client';
import { dmabuf, fault, iommufd, pci, vfio } from '@p2p/proto';
import { errnoOf } from '@p2p/status';
import { isServing, platformSecretsOf } from '@p2p/testing';
import { IBV_ACCESS_LOCAL_WRITE, IBV_ACCESS_REMOTE_ATOMIC, IBV_ACCESS_REMOTE_READ, IBV_ACCESS_REMOTE_WRITE, VerbsContext } from '@p2p/verbs';
import { iommufdUapi, O_RDWR, vfioUapi } from '@p2p/vfio-pci';
import { ACCEL0, NIC0, NIC1, RdmaStack } from '../harness/rdma-hosts';
import { rpc } from '../harness/rpc';
import type { Identity, Outcome } from './fuzz-calls';
import type { Prng } from '@p2p/chaos';
import type { Handles, VerbsSet } from './fuzz-requests';
import type { MethodShape } from './fuzz-schema';

const NVME0 = '0000:03:00.0';
/** The function the stack needs least: the target of destructive hardware calls (see `contain`). */
const NVME1 = '0000:08:00.0';
const BDFS = [ACCEL0, ACCEL0, ACCEL0, NVME0, NVME0, NIC0, NIC1, NVME1, '0000:02:00.0', '0000:00:01.0', '0000:01:00.0'];
const { IOMMU_IOAS_MAP_READABLE, IOMMU_IOAS_MAP_WRITEABLE } = iommufdUapi;
const { VFIO_DEVICE_FEATURE_DMA_BUF, VFIO_DEVICE_FEATURE_GET, VFIO_DEVICE_FEATURE_LOW_POWER_EXIT, VFIO_DEVICE_FEATURE_SET, VFIO_PCI_BAR0_REGION_INDEX } = vfioUapi;
const BAR2 = VFIO_PCI_BAR0_REGION_INDEX + 2;
const HEAP_SIZE = 64 * 1024;
const IBV_ACCESS_ALL = IBV_ACCESS_LOCAL_WRITE | IBV_ACCESS_REMOTE_WRITE | IBV_ACCESS_REMOTE_READ | IBV_ACCESS_REMOTE_ATOMIC;
/** How many of each kind of handle a pool keeps: the newest, which are the likeliest still alive. */
const POOL_SIZE = 6;

/**
 * pci-emu calls that take a function away from the stack, or leave it in a
 * state nothing in the run restores: an unplugged accel0 is dropped by
 * vfio-pci for good (goAway), a reset, D3hot or a config write clears its
 * memory decode and revokes every dma-buf of it. Under the platform's and
 * the administrator's tokens these are aimed at nvme1 instead when they
 * name a function the stack runs on (accel0, nic0, nic1).
 */
const RETARGETED = new Set(['ConfigWrite', 'RelocateBar', 'FunctionLevelReset', 'ResetFunction', 'SetPowerState', 'Unplug']);
const STACK_FUNCTIONS = new Set([ACCEL0, NIC0, NIC1]);

/**
 * The whole stack as separate processes, two processes (A and B) with live
 * handles on every service, the four identities the fuzzer calls as, and
 * what keeps a run going: destructive calls contained or undone, handles
 * refreshed between batches.
 */
export class FuzzFixture {
  readonly handles: Handles = {
    pids: [],
    heapFds: [],
    deviceFds: [],
    dmaBufFds: [],
    iommufdFds: [],
    iommufdIds: [1, 2, 3],
    userAddrs: [],
    verbs: [],
    bdfs: [...BDFS],
    ids: [],
    tokens: [],
    ruleIds: ['fault-1', 'fault-2', 'fault-64', ''],
    gids: [],
    incarnations: [],
    extents: [0, 4, 8, 16, 4096, HEAP_SIZE - 4, HEAP_SIZE, 1 << 20],
  };
  readonly identities: readonly Identity[];
  readonly #clients = new Map<ClientConstructor<{ close(): void }>, Map<string, { close(): void }>>();
  /** A's verbs contexts, whose clients close with the fixture. */
  readonly #contexts: VerbsContext[] = [];
  /** The verbs context on each NIC the newest refresh() opened, with the VerbsSet it made there. */
  #newestEnds: Array<{ ctx: VerbsContext; set: VerbsSet }> = [];
  /** How many log lines of each service loggedErrors() has looked at. */
  readonly #logsSeen = new Map<string, number>();

  private constructor(
    readonly stack: RdmaStack,
    readonly a: RegistrySession,
    readonly b: RegistrySession,
  ) {
    const secrets = platformSecretsOf(stack.shmDir);
    this.identities = [
      { name: 'anonymous', interceptors: [] },
      { name: 'process', interceptors: [a.interceptor] },
      { name: 'platform', interceptors: [bearerInterceptor(secrets.platformToken)] },
      { name: 'admin', interceptors: [bearerInterceptor(secrets.adminToken)] },
    ];
    this.handles.pids.push(a.pid, b.pid);
    this.handles.tokens.push(a.credential, b.credential);
    this.handles.incarnations.push(a.incarnation);
  }

  static async start(): Promise<FuzzFixture> {
    const stack = await RdmaStack.start();
    try {
      const a = await RegistrySession.open(stack.registry.address, { name: 'fuzz-a', shmDir: stack.shmDir });
      const b = await RegistrySession.open(stack.registry.address, { name: 'fuzz-b', shmDir: stack.shmDir });
      const fixture = new FuzzFixture(stack, a, b);
      await fixture.#bind(ACCEL0);
      await fixture.refresh();
      return fixture;
    } catch (error) {
      await stack.stop();
      throw error;
    }
  }

  /** Every service process: its name, address, log lines so far, and how it exited if it did. */
  get services(): Array<{ name: string; address: string; logs: readonly string[]; exited: () => string | undefined }> {
    const { stack } = this;
    const of = (name: string, process: RdmaStack['pciEmu']): { name: string; address: string; logs: readonly string[]; exited: () => string | undefined } => ({
      name,
      address: process.address,
      logs: process.logs,
      exited: () => (process.child.exitCode !== null ? `exit code ${process.child.exitCode}` : process.child.signalCode !== null ? `signal ${process.child.signalCode}` : undefined),
    });
    return [of('pci-emu', stack.pciEmu), of('dmabuf-registry', stack.registry), of('vfio-pci', stack.vfioPci), of('nic0', stack.nics[0].process), of('nic1', stack.nics[1].process)];
  }

  /**
   * Where a call of `method` goes: its service's address; for rdma-nic
   * mostly the NIC whose verbs handles the request carries (`nic`), and for
   * the fault service any process's.
   */
  addressOf(method: MethodShape, nic: 0 | 1, prng: Prng): string {
    const { stack } = this;
    switch (method.service) {
      case 'p2p.pci.v1.PciEmuService':
        return stack.pciEmu.address;
      case 'p2p.dmabuf.v1.DmaBufRegistryService':
        return stack.registry.address;
      case 'p2p.vfio.v1.VfioPciService':
      case 'p2p.vfio.v1.VfioDeviceIommufdService':
      case 'p2p.vfio.v1.IommufdService':
        return stack.vfioPci.address;
      case 'p2p.rdma.v1.RdmaNicService':
        return stack.nics[prng.chance(0.85) ? nic : 1 - nic]!.process.address;
      case 'p2p.rdma.v1.RdmaWireService':
        return this.wireAddress(nic);
      default:
        return prng.pick(this.services).address;
    }
  }

  /** Where NIC `nic` serves the wire: its GID's address (RoCEv2: the GID is the IP address), on the deployment's wire port. */
  wireAddress(nic: 0 | 1): string {
    return `${this.stack.nics[nic].ip}:${this.stack.wirePort}`;
  }

  /**
   * A QP of its own for one wire conversation to pose as the far end of:
   * made on `nic` in the newest context's PD and CQ, connected RTS to the
   * QP of the newest context on the other NIC, expecting PSN 0, with a 4 KiB
   * receive posted so that a SEND lands. Fresh, because RC runs no PSN after
   * the first it NAKs or answers RNR, and a QP the unary fuzz or an earlier
   * conversation used seldom runs anything. `close` destroys it. Undefined
   * when the newest refresh made no connected pair.
   */
  async wireTarget(nic: 0 | 1): Promise<{ target: VerbsSet; close: () => Promise<void> } | undefined> {
    const end = this.#newestEnds[nic];
    const far = this.#newestEnds[1 - nic];
    if (end === undefined || far === undefined) return undefined;
    const { ctx, set } = end;
    try {
      const { qpNum } = await ctx.createQp({ pdHandle: set.pdHandle, sendCqHandle: set.cqHandle, recvCqHandle: set.cqHandle, cap: { maxSendWr: 4, maxRecvWr: 4, maxSendSge: 1, maxRecvSge: 1 } });
      const close = (): Promise<void> => this.#ignoring(() => ctx.destroyQp(qpNum));
      await ctx.connectRc(qpNum, { gid: set.peerGid, qpNum: far.set.qpNum }, { access: IBV_ACCESS_ALL }).catch(async (error: unknown) => {
        await close();
        throw error;
      });
      await ctx.postRecv(qpNum, [{ wrId: 1n, sgList: [{ addr: 0n, length: 4096, lkey: set.lkey }] }]).catch(() => undefined);
      return { target: { ...set, qpNum, peerQpNum: far.set.qpNum }, close };
    } catch {
      return undefined;
    }
  }

  /**
   * A ring the fuzzer's peer offers a NIC in its second hello, as a NIC
   * does: a system-heap buffer of A sent to the NIC's registry pid as a
   * one-time fd token. `close` drops A's fd; the NIC's reference goes when
   * it releases the ring.
   */
  async offerRing(toPid: number, bytes: number): Promise<{ token: string; close: () => Promise<void> }> {
    const { fd } = await this.a.heapAllocate(bytes);
    const close = (): Promise<void> => this.a.closeFd(fd).catch(() => undefined);
    try {
      return { token: await this.a.sendFd(fd, toPid), close };
    } catch (error) {
      await close();
      throw error;
    }
  }

  /**
   * Takes the ring a NIC offered to `pid` (A or B, as the hello named it)
   * and closes it at once: a token nobody redeems would hold the NIC's ring,
   * charged to the NIC, until the addressee exits.
   */
  async redeemRing(pid: number, token: string): Promise<void> {
    const session = [this.a, this.b].find((s) => s.pid === pid);
    if (session === undefined) return;
    await this.#ignoring(async () => session.closeFd(await session.receiveFd(token)));
  }

  /**
   * Lines the services logged at level error or fatal (pino 50 and up)
   * since the last call. The wire has no status to carry a server bug in a
   * packet's handling: a handler that throws is caught, logged as an error,
   * and the packet dropped, so the log is where such a bug shows.
   */
  loggedErrors(): string[] {
    const found: string[] = [];
    for (const { name, logs } of this.services) {
      const seen = this.#logsSeen.get(name) ?? 0;
      // Without its time, so that a bug logged once per identity's conversation is reported once.
      for (const line of logs.slice(seen)) if (/"level":(5\d|6\d)\b/.test(line)) found.push(`${name}: ${line.replace(/"time":\d+,/, '').slice(0, 400)}`);
      this.#logsSeen.set(name, logs.length);
    }
    return found;
  }

  /**
   * Aims a destructive hardware call of a privileged caller away from the
   * functions the stack runs on (see RETARGETED). Mutates `request`; uses
   * no randomness, so the request stream stays the seed's.
   */
  contain(method: MethodShape, identity: Identity, request: Record<string, unknown>): void {
    if (this.isDestructive(method, identity) && STACK_FUNCTIONS.has(request['bdf'] as string)) request['bdf'] = NVME1;
  }

  /** Whether `identity` may take a function away with `method` (see RETARGETED): such requests go out only as contain() left them. */
  isDestructive(method: MethodShape, identity: Identity): boolean {
    return (identity.name === 'platform' || identity.name === 'admin') && method.service === 'p2p.pci.v1.PciEmuService' && RETARGETED.has(method.name);
  }

  /**
   * Undoes what a successful call changed that later calls depend on:
   * an unplugged or powered-down function comes back; a bind or unbind of
   * the administrator is reversed; a fault rule is removed at once, so no
   * injected abort or delay reaches another call.
   */
  async undo(method: MethodShape, address: string, request: Record<string, unknown>, outcome: Outcome): Promise<void> {
    const bdf = request['bdf'] as string;
    switch (method.path) {
      case '/p2p.pci.v1.PciEmuService/Unplug':
      case '/p2p.pci.v1.PciEmuService/SetPowerState':
      case '/p2p.pci.v1.PciEmuService/FunctionLevelReset':
      case '/p2p.pci.v1.PciEmuService/ResetFunction':
        if (outcome.code === 0) await this.#restoreFunction(bdf);
        return;
      case '/p2p.vfio.v1.VfioPciService/Bind':
        if (outcome.code === 0 && bdf !== ACCEL0) await this.#ignoring(() => rpc((cb) => this.#admin(vfio.VfioPciServiceClient, this.stack.vfioPci.address).unbind({ bdf }, cb)));
        return;
      case '/p2p.vfio.v1.VfioPciService/Unbind':
        if (outcome.code === 0 && bdf === ACCEL0) await this.#bind(ACCEL0);
        return;
      case '/p2p.fault.v1.FaultInjectionService/AddFaultRule': {
        const id = (outcome.response as fault.AddFaultRuleResponse | undefined)?.rule?.id;
        if (id !== undefined) await rpc((cb) => this.#admin(fault.FaultInjectionServiceClient, address).removeFaultRule({ id }, cb));
        return;
      }
      default:
        return;
    }
  }

  /**
   * Between batches: every service answers health SERVING and no process
   * exited (returns what is wrong), no fault rule is left, and accel0 is
   * bound and out of low power so the next batch reaches the deep paths.
   */
  async checkAndRestore(): Promise<string[]> {
    const problems: string[] = [];
    for (const service of this.services) {
      const exited = service.exited();
      if (exited !== undefined) problems.push(`${service.name} exited (${exited})`);
      else if (!(await isServing(service.address, 5000))) problems.push(`${service.name} does not answer health SERVING`);
    }
    if (problems.length > 0) return problems;
    for (const service of this.services) {
      const { removed } = await rpc<fault.ClearFaultRulesResponse>((cb) => this.#admin(fault.FaultInjectionServiceClient, service.address).clearFaultRules({}, cb));
      if (removed > 0) problems.push(`${service.name} held ${removed} fault rules the fuzzer did not undo`);
    }
    for (const bdf of [NVME0, NVME1]) await this.#restoreFunction(bdf);
    await this.refresh();
    return problems;
  }

  /**
   * Fresh live handles for A (a heap buffer, attached, mapped and mmapped;
   * an iommufd with an IOAS mapping it; accel0 open, a BAR2 dma-buf; a
   * verbs context with PD, CQ, MR and a QP on each NIC, the two QPs
   * connected; an fd token for B) added to the pools. Each step may fail
   * after what the fuzzer did (A's device fd closed, say): it is retried
   * next time, and the pools keep what is there.
   */
  async refresh(): Promise<void> {
    const { a, b, handles } = this;
    const registry = this.#as(dmabuf.DmaBufRegistryServiceClient, this.stack.registry.address, 'a');
    await this.#ignoring(async () => {
      const { fd, bufferId } = await a.heapAllocate(HEAP_SIZE);
      push(handles.heapFds, fd);
      push(handles.ids, bufferId);
      const attached = await rpc<dmabuf.AttachResponse>((cb) => registry.attach({ pid: 0, fd, importerPid: 0, importerBdf: '', dynamic: true, peer2peer: true, shm: { id: a.shmId } }, cb));
      push(handles.ids, attached.attachmentId);
      await rpc((cb) => registry.mapAttachment({ pid: 0, attachmentId: attached.attachmentId }, cb));
      push(handles.tokens, await a.sendFd(fd, b.pid));
      const { addr } = await a.mmapFd(fd, 0, HEAP_SIZE);
      push(handles.userAddrs, addr, addr + BigInt(HEAP_SIZE / 2));
    });
    await this.#ignoring(async () => {
      // A /dev/iommu context with an IOAS that maps A's mmapped heap buffer: IoasMap, MapDma, bind and attach reach past their lookups.
      const iommu = this.#as(iommufd.IommufdServiceClient, this.stack.vfioPci.address, 'a');
      const { fd } = await rpc<iommufd.OpenIommufdResponse>((cb) => iommu.openIommufd({ pid: 0 }, cb));
      push(handles.iommufdFds, fd);
      const { outIoasId } = await rpc<iommufd.IoasAllocResponse>((cb) => iommu.ioasAlloc({ pid: 0, fd, flags: 0 }, cb));
      push(handles.iommufdIds, outIoasId);
      const userVa = handles.userAddrs.at(-2);
      if (userVa !== undefined) {
        await rpc((cb) => iommu.ioasMap({ pid: 0, fd, flags: IOMMU_IOAS_MAP_READABLE | IOMMU_IOAS_MAP_WRITEABLE, ioasId: outIoasId, reserved: 0, userVa, length: BigInt(HEAP_SIZE), iova: 0n }, cb));
      }
    });
    await this.#ignoring(async () => {
      const driver = this.#as(vfio.VfioPciServiceClient, this.stack.vfioPci.address, 'a');
      await this.#bind(ACCEL0);
      let deviceFd = handles.deviceFds.at(-1);
      if (deviceFd === undefined || !(await this.#holds(registry, deviceFd))) {
        deviceFd = (await rpc<vfio.OpenDeviceResponse>((cb) => driver.openDevice({ pid: 0, bdf: ACCEL0 }, cb))).fd;
        push(handles.deviceFds, deviceFd);
      }
      await this.#ignoring(() => rpc((cb) => driver.deviceFeature({ pid: 0, deviceFd, argsz: 0, flags: VFIO_DEVICE_FEATURE_SET | VFIO_DEVICE_FEATURE_LOW_POWER_EXIT, payload: undefined }, cb)));
      const { fd: barFd } = await rpc<vfio.DeviceFeatureResponse>((cb) =>
        driver.deviceFeature(
          { pid: 0, deviceFd, argsz: 0, flags: VFIO_DEVICE_FEATURE_GET | VFIO_DEVICE_FEATURE_DMA_BUF, payload: { $case: 'dmaBuf', value: { regionIndex: BAR2, openFlags: O_RDWR, flags: 0, dmaRanges: [{ offset: 0n, length: BigInt(HEAP_SIZE) }] } } },
          cb,
        ),
      );
      push(handles.dmaBufFds, barFd);
      const attached = await rpc<dmabuf.AttachResponse>((cb) => registry.attach({ pid: 0, fd: barFd, importerPid: 0, importerBdf: NIC1, dynamic: true, peer2peer: true, shm: { id: a.shmId } }, cb));
      push(handles.ids, attached.attachmentId, attached.bufferId);
    });
    await this.#ignoring(async () => {
      // One context on each NIC, its QP connected to the other's (RTS both ways): PostSend and PostRecv
      // then reach the wire, with the peer's rkey at hand for RDMA WRITE and READ.
      const ends = await Promise.all(this.stack.nics.map((nic) => VerbsContext.open(nic.process.address, a)));
      this.#contexts.push(...ends);
      const heapFd = handles.heapFds.at(-1) ?? -1;
      const made = await Promise.all(
        ends.map(async (ctx) => {
          const { gid } = await ctx.queryPort(1);
          const pdHandle = await ctx.allocPd();
          const { cqHandle } = await ctx.createCq(64);
          const { qpNum } = await ctx.createQp({ pdHandle, sendCqHandle: cqHandle, recvCqHandle: cqHandle, cap: { maxSendWr: 64, maxRecvWr: 64, maxSendSge: 1, maxRecvSge: 1 } });
          const mr = await ctx.regMr(pdHandle, { heapFd, length: HEAP_SIZE, iova: 0, access: IBV_ACCESS_ALL });
          return { ctx, gid: Buffer.from(gid), pdHandle, cqHandle, qpNum, mr };
        }),
      );
      const [left, right] = made as [(typeof made)[0], (typeof made)[0]];
      await Promise.all([left.ctx.connectRc(left.qpNum, { gid: right.gid, qpNum: right.qpNum }, { access: IBV_ACCESS_ALL }), right.ctx.connectRc(right.qpNum, { gid: left.gid, qpNum: left.qpNum }, { access: IBV_ACCESS_ALL })]);
      // accel0's BAR2 dma-buf as an MR of nic1, beside it on the bus: WRITEs from nic0 land in device memory.
      const barFd = handles.dmaBufFds.at(-1);
      const barMr = barFd === undefined ? undefined : await right.ctx.regDmabufMr(right.pdHandle, { fd: barFd, offset: 0, length: HEAP_SIZE, iova: 0, access: IBV_ACCESS_ALL }).catch(() => undefined);
      this.#newestEnds = made.map((end, nic) => {
        const peer = made[1 - nic]!;
        const peerRkeys = [peer.mr.rkey, ...(nic === 0 && barMr ? [barMr.rkey] : [])];
        push(handles.gids, end.gid);
        const localRkeys = [end.mr.rkey, ...(nic === 1 && barMr ? [barMr.rkey] : [])];
        const set: VerbsSet = {
          nic: nic as 0 | 1,
          contextFd: end.ctx.fd,
          pdHandle: end.pdHandle,
          cqHandle: end.cqHandle,
          qpNum: end.qpNum,
          mrHandle: end.mr.mrHandle,
          lkey: end.mr.lkey,
          rkey: end.mr.rkey,
          peerRkeys,
          localRkeys,
          peerQpNum: peer.qpNum,
          peerGid: peer.gid,
        };
        push(handles.verbs, set);
        return { ctx: end.ctx, set };
      });
    });
    await this.#ignoring(async () => {
      const { processes } = await a.listProcesses();
      for (const process of processes) if (!handles.pids.includes(process.pid)) handles.pids.push(process.pid);
      handles.pids.splice(12);
    });
  }

  async stop(): Promise<void> {
    for (const made of this.#clients.values()) for (const client of made.values()) client.close();
    for (const ctx of this.#contexts.splice(0)) ctx.close();
    this.#clients.clear();
    await Promise.all([this.a, this.b].map((s) => s.close().catch(() => undefined)));
    await this.stack.stop();
  }

  async #holds(registry: dmabuf.DmaBufRegistryServiceClient, fd: number): Promise<boolean> {
    return rpc((cb) => registry.resolveFd({ pid: 0, fd }, cb)).then(
      () => true,
      () => false,
    );
  }

  /** Binds `bdf` to vfio-pci as the administrator; bound already (EBUSY) is fine. */
  async #bind(bdf: string): Promise<void> {
    await rpc((cb) => this.#admin(vfio.VfioPciServiceClient, this.stack.vfioPci.address).bind({ bdf, variants: undefined }, cb)).catch((error: unknown) => {
      if (errnoOf(error) !== 'EBUSY') throw error;
    });
  }

  /** Re-plugs `bdf` and brings it back to D0, whatever state it is in. */
  async #restoreFunction(bdf: string): Promise<void> {
    const emu = this.#admin(pci.PciEmuServiceClient, this.stack.pciEmu.address);
    await this.#ignoring(() => rpc((cb) => emu.replug({ bdf }, cb)));
    await this.#ignoring(() => rpc((cb) => emu.setPowerState({ bdf, state: pci.PowerState.POWER_STATE_D0 }, cb)));
  }

  #admin<C extends { close(): void }>(Ctor: ClientConstructor<C>, address: string): C {
    return this.#as(Ctor, address, 'admin');
  }

  /** A typed client of `address` calling as process A or as the administrator, made once. */
  #as<C extends { close(): void }>(Ctor: ClientConstructor<C>, address: string, who: 'a' | 'admin'): C {
    const key = `${address} ${who}`;
    let made = this.#clients.get(Ctor);
    if (made === undefined) this.#clients.set(Ctor, (made = new Map()));
    let client = made.get(key) as C | undefined;
    if (client === undefined) {
      const interceptor: Interceptor = who === 'a' ? this.a.interceptor : bearerInterceptor(platformSecretsOf(this.stack.shmDir).adminToken);
      client = new Ctor(address, credentials.createInsecure(), { interceptors: [interceptor] });
      made.set(key, client);
    }
    return client;
  }

  /** Runs a set-up or undo step whose failure only means fewer live handles. */
  async #ignoring(step: () => Promise<unknown>): Promise<void> {
    await step().catch(() => undefined);
  }
}

type ClientConstructor<C> = new (address: string, creds: ReturnType<typeof credentials.createInsecure>, options: object) => C;

/** Adds values to a pool, which keeps its newest POOL_SIZE. */
function push<T>(pool: T[], ...values: T[]): void {
  for (const value of values) if (!pool.includes(value)) pool.push(value);
  while (pool.length > POOL_SIZE) pool.shift();
}
