import * as fs from 'node:fs';
import { expect } from 'chai';
import { type DmaBufImporter, RegistrySession } from '@p2p/dmabuf-client';
import { ErrnoError } from '@p2p/errno';
import { dmabuf, pci, vfio } from '@p2p/proto';
import { asAdmin, platformSecretsOf, rejection, type ServiceProcess, startServiceProcess, tempShmDir } from '@p2p/testing';
import { expectErrno, rpc } from '../harness/rpc';

const ACCEL0 = '0000:07:00.0';
const NIC1 = '0000:09:00.0';
const BAR2 = 2;
const CONFIG_REGION = 7;
const PCI_COMMAND = 0x04;
const PCI_COMMAND_MEMORY = 0x2;
const FEATURE_DMA_BUF = 11;
const GET = 1 << 16;
const PROBE = 1 << 18;
const KiB = 1024;

/**
 * vfio-pci end to end: pci-emu, dmabuf-registry and vfio-pci as three
 * processes; a process (SPDK, say) opens the accelerator, exports BAR2 ranges
 * as a dma-buf, and an RDMA NIC's driver imports it peer to peer.
 */
describe('vfio-pci over gRPC (pci-emu, registry and vfio-pci as processes)', function () {
  this.timeout(60_000);
  let shmDir: string;
  let services: ServiceProcess[] = [];
  let client: vfio.VfioPciServiceClient;
  let pciClient: pci.PciEmuServiceClient;
  let spdk: RegistrySession;
  let nic: RegistrySession;
  let deviceFd: number;

  before(async () => {
    shmDir = tempShmDir();
    const env = { P2P_SHM_DIR: shmDir, LOG_LEVEL: 'warn', DMABUF_REGISTRY_ACK_TIMEOUT_MS: '1000' };
    const pciEmu = await startServiceProcess('pci-emu', 'PCI_EMU', { env });
    const registry = await startServiceProcess('dmabuf-registry', 'DMABUF_REGISTRY', { env: { ...env, PCI_EMU_ADDRESS: pciEmu.address } });
    const vfioPci = await startServiceProcess('vfio-pci', 'VFIO_PCI', { env: { ...env, PCI_EMU_ADDRESS: pciEmu.address, DMABUF_REGISTRY_ADDRESS: registry.address } });
    services = [vfioPci, registry, pciEmu];
    // The test drives vfio-pci and the hardware as the administrator; the NIC is the platform's.
    const admin = asAdmin(shmDir);
    client = new vfio.VfioPciServiceClient(vfioPci.address, admin.credentials, admin.options);
    pciClient = new pci.PciEmuServiceClient(pciEmu.address, admin.credentials, admin.options);
    spdk = await RegistrySession.open(registry.address, { name: 'spdk', shmDir });
    nic = await RegistrySession.open(registry.address, { name: 'rdma-nic', shmDir, privilegedCredential: platformSecretsOf(shmDir).platformToken });
    await rpc((cb) => client.bind({ bdf: ACCEL0, variants: undefined }, cb));
    deviceFd = (await rpc<vfio.OpenDeviceResponse>((cb) => client.openDevice({ pid: spdk.pid, bdf: ACCEL0 }, cb))).fd;
  });

  after(async () => {
    await Promise.all([spdk?.close(), nic?.close()].map((p) => p?.catch(() => undefined)));
    client?.close();
    pciClient?.close();
    for (const service of services) await service.stop();
    fs.rmSync(shmDir, { recursive: true, force: true });
  });

  const exportRanges = (ranges: Array<[number, number]>, extra: Partial<vfio.DeviceFeatureRequest> = {}): Promise<vfio.DeviceFeatureResponse> =>
    rpc((cb) =>
      client.deviceFeature(
        {
          pid: spdk.pid,
          deviceFd,
          argsz: 0,
          flags: GET | FEATURE_DMA_BUF,
          payload: { $case: 'dmaBuf', value: { regionIndex: BAR2, openFlags: 2, flags: 0, dmaRanges: ranges.map(([o, l]) => ({ offset: BigInt(o), length: BigInt(l) })) } },
          ...extra,
        },
        cb,
      ),
    );
  const configWrite = (offset: number, data: Buffer): Promise<vfio.RegionWriteResponse> =>
    rpc((cb) => client.regionWrite({ pid: spdk.pid, deviceFd, index: CONFIG_REGION, offset: BigInt(offset), data }, cb));
  const u16 = (value: number): Buffer => {
    const b = Buffer.alloc(2);
    b.writeUInt16LE(value);
    return b;
  };
  const command = async (): Promise<number> =>
    (await rpc<vfio.RegionReadResponse>((cb) => client.regionRead({ pid: spdk.pid, deviceFd, index: CONFIG_REGION, offset: BigInt(PCI_COMMAND), count: 2 }, cb))).data.readUInt16LE(0);

  it('owns a device for one process at a time and describes its regions', async () => {
    await expectErrno(rpc((cb) => client.openDevice({ pid: nic.pid, bdf: ACCEL0 }, cb)), 'EBUSY');
    const info = await rpc<vfio.GetDeviceInfoResponse>((cb) => client.getDeviceInfo({ pid: spdk.pid, deviceFd }, cb));
    expect(info.numRegions).to.equal(9);
    const bar2 = await rpc<vfio.GetRegionInfoResponse>((cb) => client.getRegionInfo({ pid: spdk.pid, deviceFd, index: BAR2 }, cb));
    expect(bar2.size).to.equal(16n * 1024n ** 3n);
    expect(bar2.offset).to.equal(2n << 40n);
    await expectErrno(rpc((cb) => client.getRegionInfo({ pid: nic.pid, deviceFd, index: BAR2 }, cb)), 'EBADF');
  });

  it('exports BAR ranges as a dma-buf that a NIC maps peer to peer, over the same memory as the BAR', async () => {
    const probe = await rpc<vfio.DeviceFeatureResponse>((cb) =>
      client.deviceFeature({ pid: spdk.pid, deviceFd, argsz: 0, flags: GET | PROBE | FEATURE_DMA_BUF, payload: undefined }, cb),
    );
    expect(probe.fd).to.equal(-1);
    const { fd } = await exportRanges([
      [0, 64 * KiB],
      [1024 * KiB, 64 * KiB],
    ]);
    const info = (await nic.bufInfo()).find((b) => b.exporter === 'vfio-pci')!;
    expect(info.size).to.equal(128n * 1024n);
    expect(info.providerBdf).to.equal(ACCEL0);

    const importer = await nic.importDmaBuf({ fd, holderPid: spdk.pid, importerBdf: NIC1 });
    const mapping = await importer.map();
    expect(mapping.mapType).to.equal(dmabuf.DmaMapType.DMA_MAP_TYPE_BUS_ADDR);
    const { function: accel } = await rpc<pci.GetFunctionResponse>((cb) => pciClient.getFunction({ bdf: ACCEL0 }, cb));
    const busAddress = accel!.bars.find((b) => b.index === BAR2)!.busAddress;
    expect(mapping.extents[0]!.dmaAddress).to.equal(busAddress);
    expect(mapping.extents.at(-1)!.dmaAddress + mapping.extents.at(-1)!.length).to.equal(busAddress + 1024n * 1024n + 64n * 1024n);

    // The second range starts 64 KiB into the buffer, at BAR offset 1 MiB.
    await importer.write(64 * KiB + 16, Buffer.from('peer to peer'));
    const bar = await rpc<vfio.RegionReadResponse>((cb) =>
      client.regionRead({ pid: spdk.pid, deviceFd, index: BAR2, offset: BigInt(1024 * KiB + 16), count: 12 }, cb),
    );
    expect(bar.data.toString()).to.equal('peer to peer');
    await importer.detach();
    await spdk.closeFd(fd);
  });

  it('refuses importers that cannot do peer to peer', async () => {
    const { fd } = await exportRanges([[0, 4 * KiB]]);
    const admin = asAdmin(shmDir);
    const registry = new dmabuf.DmaBufRegistryServiceClient(services[1]!.address, admin.credentials, admin.options);
    await expectErrno(rpc((cb) => registry.attach({ pid: spdk.pid, fd, importerPid: 0, importerBdf: NIC1, dynamic: false, peer2peer: true, shm: undefined }, cb)), 'EOPNOTSUPP');
    registry.close();
    const noP2p = await rejection(nic.importDmaBuf({ fd, holderPid: spdk.pid, importerBdf: NIC1, peer2peer: false }));
    expect(String(noP2p)).to.include('EOPNOTSUPP');
    await spdk.closeFd(fd);
  });

  it('revokes on a PCI_COMMAND write clearing MEM before the write lands, and restores on setting it', async () => {
    const { fd } = await exportRanges([[0, 64 * KiB]]);
    const order: string[] = [];
    let importer!: DmaBufImporter;
    importer = await nic.importDmaBuf({
      fd,
      holderPid: spdk.pid,
      importerBdf: NIC1,
      onMoveNotify: async () => {
        const { function: fn } = await rpc<pci.GetFunctionResponse>((cb) => pciClient.getFunction({ bdf: ACCEL0 }, cb));
        order.push(`move_notify while MEM=${fn!.memoryEnabled}`);
      },
    });
    await importer.map();
    const original = await command();
    await configWrite(PCI_COMMAND, u16(original & ~PCI_COMMAND_MEMORY));
    order.push('config write returned');
    expect(order).to.deep.equal(['move_notify while MEM=true', 'config write returned']);
    const revoked = await rejection(importer.read(0, 4));
    expect(revoked).to.be.instanceOf(ErrnoError).with.property('errno', 'ENODEV');

    // Writing the same value again changes nothing and notifies no one.
    await configWrite(PCI_COMMAND, u16(original & ~PCI_COMMAND_MEMORY));
    expect(order).to.have.length(2);

    await configWrite(PCI_COMMAND, u16(original));
    expect(order).to.have.length(3);
    await importer.write(0, Buffer.from('back'));
    expect((await importer.read(0, 4)).toString()).to.equal('back');
    await importer.detach();
    await spdk.closeFd(fd);
  });

  it('exports revoked while decode is off', async () => {
    const original = await command();
    await configWrite(PCI_COMMAND, u16(original & ~PCI_COMMAND_MEMORY));
    const { fd } = await exportRanges([[0, 4 * KiB]]);
    const info = (await nic.bufInfo()).find((b) => b.exporter === 'vfio-pci' && b.revoked);
    expect(info, 'a revoked vfio buffer').to.not.equal(undefined);
    await configWrite(PCI_COMMAND, u16(original));
    expect((await nic.bufInfo()).find((b) => b.bufferId === info!.bufferId)!.revoked).to.equal(false);
    await spdk.closeFd(fd);
  });

  it('validates DMA_BUF requests in the kernel order, with its errno each', async () => {
    const cases: Array<[Array<[number, number]>, Partial<vfio.DeviceFeatureRequest>, string]> = [
      [[[0, 4 * KiB]], { flags: (1 << 17) | FEATURE_DMA_BUF }, 'EINVAL'],
      [[], {}, 'EINVAL'],
      [[[0, 4 * KiB]], { payload: { $case: 'dmaBuf', value: { regionIndex: 6, openFlags: 2, flags: 0, dmaRanges: [{ offset: 0n, length: 4096n }] } } }, 'ENODEV'],
      [[[0, 4 * KiB]], { payload: { $case: 'dmaBuf', value: { regionIndex: 2, openFlags: 2, flags: 1, dmaRanges: [{ offset: 0n, length: 4096n }] } } }, 'EINVAL'],
      [[[100, 4 * KiB]], {}, 'EINVAL'],
      [[[0, 0]], {}, 'EINVAL'],
      [[[16 * 1024 * 1024 * KiB - 4 * KiB, 8 * KiB]], {}, 'EINVAL'],
      [[[0, 4 * KiB]], { payload: { $case: 'dmaBuf', value: { regionIndex: 4, openFlags: 2, flags: 0, dmaRanges: [{ offset: 0n, length: 4096n }] } } }, 'EINVAL'],
      [[[0, 4 * KiB]], { flags: GET | 0x7f }, 'ENOTTY'],
    ];
    const before = (await nic.bufInfo()).length;
    for (const [ranges, extra, errno] of cases) await expectErrno(exportRanges(ranges, extra), errno as 'EINVAL');
    expect((await nic.bufInfo()).length).to.equal(before);
  });

  it('revokes for good when the device is closed: the fd lives on, attach and map fail with ENODEV', async () => {
    const { fd } = await exportRanges([[0, 4 * KiB]]);
    const importer = await nic.importDmaBuf({ fd, holderPid: spdk.pid, importerBdf: NIC1 });
    await importer.map();
    await spdk.closeFd(deviceFd);
    const gone = await rejection(importer.read(0, 4));
    expect(gone).to.be.instanceOf(ErrnoError).with.property('errno', 'ENODEV');
    expect(String(await rejection(nic.importDmaBuf({ fd, holderPid: spdk.pid, importerBdf: NIC1 })))).to.include('ENODEV');
    await importer.detach();
    await spdk.closeFd(fd);
    // The device is free again: the NIC's process can take it.
    const fdOfNic = (await rpc<vfio.OpenDeviceResponse>((cb) => client.openDevice({ pid: nic.pid, bdf: ACCEL0 }, cb))).fd;
    await nic.closeFd(fdOfNic);
    expect((await nic.bufInfo()).filter((b) => b.exporter === 'vfio-pci'), 'no vfio buffer left').to.deep.equal([]);
  });
});
