import { credentials, type Interceptor } from '@grpc/grpc-js';
import { expect } from 'chai';
import { bearerInterceptor, newToken } from '@p2p/auth';
import { RegistrySession } from '@p2p/dmabuf-client';
import { dmabuf, fault, pci, rdma, vfio } from '@p2p/proto';
import { asAdmin, platformSecretsOf } from '@p2p/testing';
import { ACCEL0, RdmaStack } from '../harness/rdma-hosts';
import { expectErrno, rpc } from '../harness/rpc';

const BAR2 = 2;
const FEATURE_DMA_BUF = 11;
const GET = 1 << 16;
const O_RDWR = 2;
const SIZE = 64 * 1024;

/**
 * Identity on every service, as an outsider tries to break it: two honest
 * processes, A (the victim) and B (the attacker), and an anonymous client.
 * Every forged call fails with the errno the kernel gives (acting as
 * another process: EPERM; another process's fd under one's own name:
 * EBADF; the platform's or root's interfaces: EACCES) and leaves A's state
 * as it was.
 */
describe('trust: forged calls on every service (every service its own process)', function () {
  this.timeout(60_000);
  let stack: RdmaStack;
  let a: RegistrySession;
  let b: RegistrySession;
  const closers: Array<() => void> = [];
  /** A's heap buffer, holding `content`. */
  let heapFd: number;
  const content = Buffer.from('the victim process wrote this');
  /** A's vfio device fd for accel0, and A's dma-buf of its BAR2. */
  let deviceFd: number;
  let barFd: number;
  /** A's verbs context on nic1. */
  let contextFd: number;

  /** A client of `Ctor` at `address` sending `interceptors` (none: anonymous). */
  function client<C extends { close(): void }>(Ctor: new (address: string, creds: ReturnType<typeof credentials.createInsecure>, options: object) => C, address: string, interceptors: Interceptor[]): C {
    const made = new Ctor(address, credentials.createInsecure(), { interceptors });
    closers.push(() => made.close());
    return made;
  }

  const as = {
    a: (): Interceptor[] => [a.interceptor],
    b: (): Interceptor[] => [b.interceptor],
    anonymous: (): Interceptor[] => [],
    forged: (): Interceptor[] => [bearerInterceptor(newToken())],
  };

  before(async () => {
    stack = await RdmaStack.start();
    a = await RegistrySession.open(stack.registry.address, { name: 'victim', shmDir: stack.shmDir });
    b = await RegistrySession.open(stack.registry.address, { name: 'attacker', shmDir: stack.shmDir });
    ({ fd: heapFd } = await a.heapAllocate(SIZE));
    await a.cpuWrite(heapFd, 0, content);

    const admin = asAdmin(stack.shmDir);
    const root = new vfio.VfioPciServiceClient(stack.vfioPci.address, admin.credentials, admin.options);
    await rpc((cb) => root.bind({ bdf: ACCEL0, variants: undefined }, cb));
    root.close();
    const vfioA = client(vfio.VfioPciServiceClient, stack.vfioPci.address, as.a());
    deviceFd = (await rpc<vfio.OpenDeviceResponse>((cb) => vfioA.openDevice({ pid: a.pid, bdf: ACCEL0 }, cb))).fd;
    barFd = (
      await rpc<vfio.DeviceFeatureResponse>((cb) =>
        vfioA.deviceFeature(
          {
            pid: a.pid,
            deviceFd,
            argsz: 0,
            flags: GET | FEATURE_DMA_BUF,
            payload: { $case: 'dmaBuf', value: { regionIndex: BAR2, openFlags: O_RDWR, flags: 0, dmaRanges: [{ offset: 0n, length: BigInt(SIZE) }] } },
          },
          cb,
        ),
      )
    ).fd;
    const nicA = client(rdma.RdmaNicServiceClient, stack.nics[1].process.address, as.a());
    contextFd = (await rpc<rdma.OpenDeviceResponse>((cb) => nicA.openDevice({ pid: a.pid }, cb))).fd;
  });

  after(async () => {
    for (const close of closers.splice(0)) close();
    await Promise.all([a, b].map((s) => s?.close().catch(() => undefined)));
    await stack?.stop();
  });

  /** A's fd table as the administrator sees it: what no forged call may change. */
  async function victimFds(): Promise<number[]> {
    const admin = asAdmin(stack.shmDir);
    const registry = client(dmabuf.DmaBufRegistryServiceClient, stack.registry.address, admin.options.interceptors ?? []);
    const { processes } = await rpc<dmabuf.ListProcessesResponse>((cb) => registry.listProcesses({}, cb));
    return processes.find((p) => p.pid === a.pid)!.fds.map((f) => f.fd);
  }

  describe('dmabuf-registry', () => {
    it('refuses every call naming A, from B, from an anonymous client and with a forged credential (EPERM), and A keeps its fds and bytes', async () => {
      const before = await victimFds();
      for (const who of [as.b(), as.anonymous(), as.forged()]) {
        const registry = client(dmabuf.DmaBufRegistryServiceClient, stack.registry.address, who);
        await expectErrno(rpc((cb) => registry.cpuRead({ pid: a.pid, fd: heapFd, offset: 0n, length: BigInt(content.length) }, cb)), 'EPERM');
        await expectErrno(rpc((cb) => registry.cpuWrite({ pid: a.pid, fd: heapFd, offset: 0n, data: Buffer.from('overwritten') }, cb)), 'EPERM');
        await expectErrno(rpc((cb) => registry.sendFd({ pid: a.pid, fd: heapFd, toPid: b.pid }, cb)), 'EPERM');
        await expectErrno(rpc((cb) => registry.closeFd({ pid: a.pid, fd: deviceFd }, cb)), 'EPERM');
        await expectErrno(rpc((cb) => registry.dupFd({ pid: a.pid, fd: heapFd }, cb)), 'EPERM');
        await expectErrno(rpc((cb) => registry.heapAllocate({ pid: a.pid, size: 4096n, openFlags: O_RDWR }, cb)), 'EPERM');
        await expectErrno(rpc((cb) => registry.mmapFd({ pid: a.pid, fd: heapFd, offset: 0n, length: 4096n }, cb)), 'EPERM');
        await expectErrno(
          rpc((cb) => registry.attach({ pid: a.pid, fd: barFd, importerPid: 0, importerBdf: '', dynamic: true, peer2peer: true, shm: undefined }, cb)),
          'EPERM',
        );
      }
      expect(await victimFds()).to.deep.equal(before);
      expect(await a.cpuRead(heapFd, 0, content.length)).to.deep.equal(content);
    });

    it("gives B EBADF for A's fd numbers under its own name, and EPERM for naming A as the importer", async () => {
      const registry = client(dmabuf.DmaBufRegistryServiceClient, stack.registry.address, as.b());
      await expectErrno(rpc((cb) => registry.cpuRead({ pid: 0, fd: heapFd, offset: 0n, length: 4n }, cb)), 'EBADF');
      await expectErrno(rpc((cb) => registry.resolveFd({ pid: b.pid, fd: barFd }, cb)), 'EBADF');
      const { fd } = await b.heapAllocate(4096);
      await expectErrno(
        rpc((cb) => registry.attach({ pid: b.pid, fd, importerPid: a.pid, importerBdf: '', dynamic: true, peer2peer: true, shm: undefined }, cb)),
        'EPERM',
      );
      await b.closeFd(fd);
    });

    it("shows another process's fds only to the administrator, as /proc/<pid>/fd", async () => {
      for (const who of [as.b(), as.anonymous()]) {
        const registry = client(dmabuf.DmaBufRegistryServiceClient, stack.registry.address, who);
        const { processes } = await rpc<dmabuf.ListProcessesResponse>((cb) => registry.listProcesses({}, cb));
        const victim = processes.find((p) => p.pid === a.pid);
        expect(victim?.name).to.equal('victim');
        expect(victim?.fds).to.deep.equal([]);
      }
      const { processes } = await a.listProcesses();
      expect(processes.find((p) => p.pid === a.pid)?.fds.map((f) => f.fd)).to.include.members([heapFd, deviceFd, barFd]);
      expect(await victimFds()).to.include.members([heapFd, deviceFd, barFd]);
    });

    it("keeps bufinfo, the event stream, credential resolution and owner sessions for the platform (EACCES)", async () => {
      for (const who of [as.b(), as.anonymous()]) {
        const registry = client(dmabuf.DmaBufRegistryServiceClient, stack.registry.address, who);
        await expectErrno(rpc((cb) => registry.getBufInfo({}, cb)), 'EACCES');
        await expectErrno(rpc((cb) => registry.resolveCredential({ credential: a.credential }, cb)), 'EACCES');
        const events = registry.watchEvents({});
        await expectErrno(new Promise((_, reject) => events.on('error', reject)), 'EACCES');
        const owner = registry.openOwnerSession();
        const refused = new Promise<unknown>((resolve) => owner.on('error', resolve));
        owner.write({ request: { $case: 'register', value: dmabuf.RegisterOwner.fromPartial({ name: 'vfio-pci-impostor' }) } });
        await expectErrno(refused.then((error) => Promise.reject(error)), 'EACCES');
      }
      const platform = client(dmabuf.DmaBufRegistryServiceClient, stack.registry.address, [bearerInterceptor(platformSecretsOf(stack.shmDir).platformToken)]);
      expect((await rpc<dmabuf.ResolveCredentialResponse>((cb) => platform.resolveCredential({ credential: a.credential }, cb))).pid).to.equal(a.pid);
      await expectErrno(rpc((cb) => platform.resolveCredential({ credential: newToken() }, cb)), 'EPERM');
    });

    it('kills a credential with its session: a later call with it is EPERM', async () => {
      const shortLived = await RegistrySession.open(stack.registry.address, { name: 'short-lived', shmDir: stack.shmDir });
      const { credential, pid } = shortLived;
      await shortLived.close();
      const registry = client(dmabuf.DmaBufRegistryServiceClient, stack.registry.address, [bearerInterceptor(credential)]);
      await expectErrno(rpc((cb) => registry.heapAllocate({ pid, size: 4096n, openFlags: O_RDWR }, cb)), 'EPERM');
      const nic = client(rdma.RdmaNicServiceClient, stack.nics[0].process.address, [bearerInterceptor(credential)]);
      await expectErrno(rpc((cb) => nic.openDevice({ pid }, cb)), 'EPERM');
    });
  });

  describe('vfio-pci', () => {
    it("refuses B and anonymous clients acting as A (EPERM), gives B EBADF for A's device fd, and A's device stays A's", async () => {
      for (const who of [as.b(), as.anonymous(), as.forged()]) {
        const driver = client(vfio.VfioPciServiceClient, stack.vfioPci.address, who);
        await expectErrno(rpc((cb) => driver.regionWrite({ pid: a.pid, deviceFd, index: BAR2, offset: 0n, data: Buffer.from('evil') }, cb)), 'EPERM');
        await expectErrno(rpc((cb) => driver.reset({ pid: a.pid, deviceFd }, cb)), 'EPERM');
        await expectErrno(rpc((cb) => driver.getDeviceInfo({ pid: a.pid, deviceFd }, cb)), 'EPERM');
      }
      const driverB = client(vfio.VfioPciServiceClient, stack.vfioPci.address, as.b());
      await expectErrno(rpc((cb) => driverB.regionRead({ pid: b.pid, deviceFd, index: BAR2, offset: 0n, count: 4 }, cb)), 'EBADF');
      await expectErrno(
        rpc((cb) =>
          driverB.deviceFeature(
            {
              pid: b.pid,
              deviceFd,
              argsz: 0,
              flags: GET | FEATURE_DMA_BUF,
              payload: { $case: 'dmaBuf', value: { regionIndex: BAR2, openFlags: O_RDWR, flags: 0, dmaRanges: [{ offset: 0n, length: 4096n }] } },
            },
            cb,
          ),
        ),
        'EBADF',
      );
      const { devices } = await rpc<vfio.ListDevicesResponse>((cb) => driverB.listDevices({}, cb));
      expect(devices.find((d) => d.bdf === ACCEL0)?.ownerPid).to.equal(a.pid);
    });

    it('keeps binding and unbinding for the administrator (EACCES)', async () => {
      for (const who of [as.b(), as.anonymous()]) {
        const driver = client(vfio.VfioPciServiceClient, stack.vfioPci.address, who);
        await expectErrno(rpc((cb) => driver.unbind({ bdf: ACCEL0 }, cb)), 'EACCES');
      }
      const { devices } = await rpc<vfio.ListDevicesResponse>((cb) => client(vfio.VfioPciServiceClient, stack.vfioPci.address, as.a()).listDevices({}, cb));
      expect(devices.map((d) => d.bdf)).to.include(ACCEL0);
    });
  });

  describe('pci-emu', () => {
    it("answers the topology to anyone, and its raw hardware only to the platform and the administrator (EACCES): A's BAR is not read, moved or reset", async () => {
      const admin = asAdmin(stack.shmDir);
      const hardware = client(pci.PciEmuServiceClient, stack.pciEmu.address, admin.options.interceptors ?? []);
      const segmentsBefore = await rpc<pci.GetBarSegmentsResponse>((cb) => hardware.getBarSegments({ bdf: ACCEL0, bar: BAR2, offset: 0n, length: BigInt(SIZE) }, cb));
      for (const who of [as.a(), as.b(), as.anonymous(), as.forged()]) {
        const emu = client(pci.PciEmuServiceClient, stack.pciEmu.address, who);
        expect((await rpc<pci.ListFunctionsResponse>((cb) => emu.listFunctions({}, cb))).functions).to.have.length(5);
        await expectErrno(rpc((cb) => emu.bulkRead({ bdf: ACCEL0, bar: BAR2, offset: 0n, length: 16n }, cb)), 'EACCES');
        await expectErrno(rpc((cb) => emu.mmioWrite({ bdf: ACCEL0, bar: BAR2, offset: 0n, width: 4, value: 1n }, cb)), 'EACCES');
        await expectErrno(rpc((cb) => emu.getBarSegments({ bdf: ACCEL0, bar: BAR2, offset: 0n, length: 16n }, cb)), 'EACCES');
        await expectErrno(rpc((cb) => emu.relocateBar({ bdf: ACCEL0, bar: BAR2 }, cb)), 'EACCES');
        await expectErrno(rpc((cb) => emu.configWrite({ bdf: ACCEL0, offset: 4, width: 2, value: 0, hardware: false }, cb)), 'EACCES');
        await expectErrno(rpc((cb) => emu.functionLevelReset({ bdf: ACCEL0 }, cb)), 'EACCES');
        await expectErrno(rpc((cb) => emu.unplug({ bdf: ACCEL0 }, cb)), 'EACCES');
      }
      const segmentsAfter = await rpc<pci.GetBarSegmentsResponse>((cb) => hardware.getBarSegments({ bdf: ACCEL0, bar: BAR2, offset: 0n, length: BigInt(SIZE) }, cb));
      expect(segmentsAfter.extents.map((e) => e.segment)).to.deep.equal(segmentsBefore.extents.map((e) => e.segment));
      const { function: accel } = await rpc<pci.GetFunctionResponse>((cb) => hardware.getFunction({ bdf: ACCEL0 }, cb));
      expect(accel?.present).to.equal(true);
    });
  });

  describe('rdma-nic', () => {
    it("refuses B and anonymous clients acting as A (EPERM), and gives B EBADF for A's context and A's dma-buf", async () => {
      const nicAddress = stack.nics[1].process.address;
      for (const who of [as.b(), as.anonymous(), as.forged()]) {
        const nic = client(rdma.RdmaNicServiceClient, nicAddress, who);
        await expectErrno(rpc((cb) => nic.openDevice({ pid: a.pid }, cb)), 'EPERM');
        await expectErrno(rpc((cb) => nic.allocPd({ pid: a.pid, contextFd }, cb)), 'EPERM');
        await expectErrno(rpc((cb) => nic.pollCq({ pid: a.pid, contextFd, cqHandle: 1, maxEntries: 1 }, cb)), 'EPERM');
      }
      const nicB = client(rdma.RdmaNicServiceClient, nicAddress, as.b());
      await expectErrno(rpc((cb) => nicB.allocPd({ pid: b.pid, contextFd }, cb)), 'EBADF');
      const { fd: ownContext } = await rpc<rdma.OpenDeviceResponse>((cb) => nicB.openDevice({ pid: 0 }, cb));
      const { pdHandle } = await rpc<rdma.AllocPdResponse>((cb) => nicB.allocPd({ pid: b.pid, contextFd: ownContext }, cb));
      await expectErrno(
        rpc((cb) => nicB.regDmabufMr({ pid: b.pid, contextFd: ownContext, pdHandle, fd: barFd, offset: 0n, length: 4096n, iova: 0n, access: 1 }, cb)),
        'EBADF',
      );
      // A's context still answers A.
      const nicA = client(rdma.RdmaNicServiceClient, nicAddress, as.a());
      expect((await rpc<rdma.AllocPdResponse>((cb) => nicA.allocPd({ pid: a.pid, contextFd }, cb))).pdHandle).to.be.a('number');
    });
  });

  it('keeps every fault service for the administrator (EACCES), so no client can break the stack with a rule', async () => {
    const addresses = [stack.pciEmu.address, stack.registry.address, stack.vfioPci.address, stack.nics[0].process.address];
    const rule = fault.FaultRule.fromPartial({ methodPattern: '*', abort: { errno: 'EIO', percentage: 100 } });
    for (const address of addresses) {
      for (const who of [as.a(), as.anonymous(), [bearerInterceptor(platformSecretsOf(stack.shmDir).platformToken)]]) {
        const faults = client(fault.FaultInjectionServiceClient, address, who);
        await expectErrno(rpc((cb) => faults.addFaultRule({ rule }, cb)), 'EACCES');
      }
      const admin = client(fault.FaultInjectionServiceClient, address, asAdmin(stack.shmDir).options.interceptors ?? []);
      expect((await rpc<fault.ListFaultRulesResponse>((cb) => admin.listFaultRules({}, cb))).rules).to.deep.equal([]);
    }
  });
});
