import * as fs from 'node:fs';
import { credentials } from '@grpc/grpc-js';
import { expect } from 'chai';
import { RegistrySession } from '@p2p/dmabuf-client';
import { dmabuf, vfio } from '@p2p/proto';
import { asAdmin, type ServiceProcess, startServiceProcess, tempShmDir } from '@p2p/testing';
import { EventLog } from '../dmabuf-registry/fixtures';
import { expectErrno, rpc } from '../harness/rpc';

const ACCEL0 = '0000:07:00.0';
const NVME0 = '0000:03:00.0';
const BAR0 = 0;

/**
 * vfio-pci remembers which device each (pid, fd) names after the registry
 * resolved it once; the registry tells it of every close of its files' fds
 * before the close returns. These tests close, dup, send and exit around
 * ioctls that have already been answered once, with pci-emu, the registry and
 * vfio-pci as processes, and check every errno is what the registry's fd
 * table says.
 */
describe('vfio-pci over gRPC: device fds after close, dup, SendFd and exit', function () {
  this.timeout(60_000);
  let shmDir: string;
  let services: ServiceProcess[] = [];
  let registryAddress: string;
  let vfioAddress: string;
  let admin: vfio.VfioPciServiceClient;
  let events: EventLog;
  let live: Array<{ session: RegistrySession; client: vfio.VfioPciServiceClient }> = [];

  before(async () => {
    shmDir = tempShmDir();
    const env = { P2P_SHM_DIR: shmDir, LOG_LEVEL: 'warn' };
    const pciEmu = await startServiceProcess('pci-emu', 'PCI_EMU', { env });
    const registry = await startServiceProcess('dmabuf-registry', 'DMABUF_REGISTRY', { env: { ...env, PCI_EMU_ADDRESS: pciEmu.address } });
    const vfioPci = await startServiceProcess('vfio-pci', 'VFIO_PCI', { env: { ...env, PCI_EMU_ADDRESS: pciEmu.address, DMABUF_REGISTRY_ADDRESS: registry.address } });
    services = [vfioPci, registry, pciEmu];
    registryAddress = registry.address;
    vfioAddress = vfioPci.address;
    const root = asAdmin(shmDir);
    admin = new vfio.VfioPciServiceClient(vfioAddress, root.credentials, root.options);
    events = await EventLog.open(registryAddress, shmDir);
    await rpc((cb) => admin.bind({ bdf: ACCEL0, variants: undefined }, cb));
    await rpc((cb) => admin.bind({ bdf: NVME0, variants: undefined }, cb));
  });

  // Every process exits, and its exit is done, before the next test opens the devices again.
  afterEach(async () => {
    for (const { session, client } of live) {
      const pid = session.pid;
      client.close();
      await session.close();
      await events.waitFor(dmabuf.EventKind.EVENT_KIND_PROCESS_EXIT, { pid });
    }
    live = [];
  });

  after(async () => {
    events?.close();
    admin?.close();
    for (const service of services) await service.stop();
    fs.rmSync(shmDir, { recursive: true, force: true });
  });

  /** A process, and a vfio-pci client that proves it on every call. */
  async function openProcess(name: string): Promise<{ session: RegistrySession; client: vfio.VfioPciServiceClient }> {
    const session = await RegistrySession.open(registryAddress, { name, shmDir });
    const client = new vfio.VfioPciServiceClient(vfioAddress, credentials.createInsecure(), { interceptors: [session.interceptor] });
    const p = { session, client };
    live.push(p);
    return p;
  }

  const openDevice = async (p: { session: RegistrySession; client: vfio.VfioPciServiceClient }, bdf = ACCEL0): Promise<number> =>
    (await rpc<vfio.OpenDeviceResponse>((cb) => p.client.openDevice({ pid: p.session.pid, bdf }, cb))).fd;
  const deviceInfo = (p: { session: RegistrySession; client: vfio.VfioPciServiceClient }, deviceFd: number): Promise<vfio.GetDeviceInfoResponse> =>
    rpc((cb) => p.client.getDeviceInfo({ pid: p.session.pid, deviceFd }, cb));
  const bar0Size = async (p: { session: RegistrySession; client: vfio.VfioPciServiceClient }, deviceFd: number): Promise<bigint> =>
    (await rpc<vfio.GetRegionInfoResponse>((cb) => p.client.getRegionInfo({ pid: p.session.pid, deviceFd, index: BAR0 }, cb))).size;

  it('EBADF on a closed device fd that another process still holds, ENOTTY once its number names a heap buffer', async () => {
    const spdk = await openProcess('spdk');
    const peer = await openProcess('peer');
    const fd = await openDevice(spdk);
    await deviceInfo(spdk, fd);
    const theirs = await peer.session.receiveFd(await spdk.session.sendFd(fd, peer.session.pid));
    await spdk.session.closeFd(fd);
    await expectErrno(deviceInfo(spdk, fd), 'EBADF');
    expect((await spdk.session.heapAllocate(4096)).fd).to.equal(fd);
    await expectErrno(deviceInfo(spdk, fd), 'ENOTTY');
    expect((await deviceInfo(peer, theirs)).numRegions).to.equal(9);
  });

  it('reaches the new device once a closed device fd’s number names another device', async () => {
    const spdk = await openProcess('spdk');
    const peer = await openProcess('peer');
    const fd = await openDevice(spdk, ACCEL0);
    const accelBar0 = await bar0Size(spdk, fd);
    await peer.session.receiveFd(await spdk.session.sendFd(fd, peer.session.pid));
    await spdk.session.closeFd(fd);
    expect(await openDevice(spdk, NVME0)).to.equal(fd);
    const nvmeBar0 = await bar0Size(spdk, fd);
    expect(nvmeBar0).to.not.equal(accelBar0);
  });

  it('a closed dup is EBADF and the fd it was dup’d from still works', async () => {
    const spdk = await openProcess('spdk');
    const fd = await openDevice(spdk);
    const dup = await spdk.session.dupFd(fd);
    await deviceInfo(spdk, fd);
    await deviceInfo(spdk, dup);
    await spdk.session.closeFd(dup);
    await expectErrno(deviceInfo(spdk, dup), 'EBADF');
    expect((await deviceInfo(spdk, fd)).numRegions).to.equal(9);
  });

  it('after SendFd and the sender’s close, the sender’s fd is EBADF and the receiver’s works', async () => {
    const spdk = await openProcess('spdk');
    const peer = await openProcess('peer');
    const fd = await openDevice(spdk);
    await deviceInfo(spdk, fd);
    const token = await spdk.session.sendFd(fd, peer.session.pid);
    await spdk.session.closeFd(fd);
    const theirs = await peer.session.receiveFd(token);
    await expectErrno(deviceInfo(spdk, fd), 'EBADF');
    expect((await deviceInfo(peer, theirs)).numRegions).to.equal(9);
  });

  it('after a process exits, its device fds are ESRCH and the process it sent the device to keeps it', async () => {
    const spdk = await openProcess('spdk');
    const peer = await openProcess('peer');
    const fd = await openDevice(spdk);
    const dup = await spdk.session.dupFd(fd);
    await deviceInfo(spdk, fd);
    await deviceInfo(spdk, dup);
    const theirs = await peer.session.receiveFd(await spdk.session.sendFd(fd, peer.session.pid));
    const pid = spdk.session.pid;
    live.splice(live.indexOf(spdk), 1);
    spdk.client.close();
    await spdk.session.close();
    await events.waitFor(dmabuf.EventKind.EVENT_KIND_PROCESS_EXIT, { pid });
    // The administrator may act in any process: what the exited one held is asked of the registry again.
    await expectErrno(rpc((cb) => admin.getDeviceInfo({ pid, deviceFd: fd }, cb)), 'ESRCH');
    await expectErrno(rpc((cb) => admin.getDeviceInfo({ pid, deviceFd: dup }, cb)), 'ESRCH');
    expect((await deviceInfo(peer, theirs)).numRegions).to.equal(9);
  });
});
