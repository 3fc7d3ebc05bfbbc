import * as fs from 'node:fs';
import { expect } from 'chai';
import { type DmaBufImporter, type MoveNotice, RegistrySession } from '@p2p/dmabuf-client';
import { dmabuf, vfio } from '@p2p/proto';
import { asAdmin, platformSecretsOf, rejection, type ServiceProcess, startServiceProcess, tempShmDir } from '@p2p/testing';
import { O_RDWR, pciRegs, vfioUapi } from '@p2p/vfio-pci';
import { expectErrno, rpc } from '../harness/rpc';

const ACCEL0 = '0000:07:00.0';
const NVME1 = '0000:08:00.0';
const NIC1 = '0000:09:00.0';
const BAR2 = 2;
const SIZE = 64 * 1024;
const GET = vfioUapi.VFIO_DEVICE_FEATURE_GET | vfioUapi.VFIO_DEVICE_FEATURE_DMA_BUF;
const CONFIG_REGION = vfioUapi.VFIO_PCI_CONFIG_REGION_INDEX;
const { PCI_COMMAND, PCI_COMMAND_MEMORY } = pciRegs;
/** The registry's refusal on behalf of a P2P-only exporter (vfio_pci_dma_buf_attach()). */
const NEEDS_P2P = 'needs a dynamic importer that allows peer2peer';

/**
 * The attach modes over gRPC, against vfio-pci's dma-bufs (pci-emu, the
 * registry and vfio-pci as processes), with the errno the kernel gives each:
 *
 * - dynamic, peer2peer (importer_ops with move_notify and allow_peer2peer):
 *   attaches; pinning it is EOPNOTSUPP upstream (vfio has no ->pin) and
 *   allowed under the allow_pin variant, where resets fail with EINVAL while
 *   pinned.
 * - dynamic without peer2peer: EOPNOTSUPP (vfio_pci_dma_buf_attach()).
 * - static (dma_buf_attach(): importer_ops NULL, so no move_notify, and
 *   attach->peer2peer is never set): EOPNOTSUPP from the same check, under
 *   allow_pin too, since the exporter's attach refuses it before any pin
 *   dma_buf_dynamic_attach() would take for a static importer. A static
 *   importer of memory that needs no peer2peer (the system heap) attaches.
 *
 * The kernel's other refusal, importer_ops without move_notify (EINVAL),
 * has no request here: every pid comes with a session that takes notices.
 */
describe('dma-buf attach modes over gRPC (static, dynamic, peer2peer, pinned) against vfio-pci buffers', function () {
  this.timeout(60_000);
  let shmDir: string;
  let services: ServiceProcess[] = [];
  let vfioAdmin: vfio.VfioPciServiceClient;
  let spdk: RegistrySession;
  let nic: RegistrySession;
  /** The registry's raw API, as the administrator: attach with importer ops the client library never sends. */
  let raw: dmabuf.DmaBufRegistryServiceClient;
  let upstreamFd: number;
  let pinVariantFd: number;

  before(async () => {
    shmDir = tempShmDir();
    const env = { P2P_SHM_DIR: shmDir, LOG_LEVEL: 'warn' };
    const pciEmu = await startServiceProcess('pci-emu', 'PCI_EMU', { env });
    const registry = await startServiceProcess('dmabuf-registry', 'DMABUF_REGISTRY', { env: { ...env, PCI_EMU_ADDRESS: pciEmu.address } });
    const vfioPci = await startServiceProcess('vfio-pci', 'VFIO_PCI', { env: { ...env, PCI_EMU_ADDRESS: pciEmu.address, DMABUF_REGISTRY_ADDRESS: registry.address } });
    services = [vfioPci, registry, pciEmu];
    const admin = asAdmin(shmDir);
    vfioAdmin = new vfio.VfioPciServiceClient(vfioPci.address, admin.credentials, admin.options);
    spdk = await RegistrySession.open(registry.address, { name: 'spdk', shmDir });
    nic = await RegistrySession.open(registry.address, { name: 'rdma-nic', shmDir, privilegedCredential: platformSecretsOf(shmDir).platformToken });
    raw = new dmabuf.DmaBufRegistryServiceClient(registry.address, admin.credentials, admin.options);
    // accel0 upstream; nvme1 under the seed's pin variant (patch 4).
    await rpc((cb) => vfioAdmin.bind({ bdf: ACCEL0, variants: undefined }, cb));
    await rpc((cb) => vfioAdmin.bind({ bdf: NVME1, variants: { dmaBufLayout: vfio.DmaBufLayout.DMA_BUF_LAYOUT_UNSPECIFIED, allowPin: true, cpuMmap: false } }, cb));
    upstreamFd = await openDevice(ACCEL0);
    pinVariantFd = await openDevice(NVME1);
    await setCommand(pinVariantFd, PCI_COMMAND_MEMORY);
  });

  after(async () => {
    raw?.close();
    await Promise.all([spdk?.close(), nic?.close()].map((p) => p?.catch(() => undefined)));
    vfioAdmin?.close();
    for (const service of services) await service.stop();
    fs.rmSync(shmDir, { recursive: true, force: true });
  });

  async function openDevice(bdf: string): Promise<number> {
    return (await rpc<vfio.OpenDeviceResponse>((cb) => vfioAdmin.openDevice({ pid: spdk.pid, bdf }, cb))).fd;
  }
  function setCommand(deviceFd: number, command: number): Promise<unknown> {
    const data = Buffer.alloc(2);
    data.writeUInt16LE(command);
    return rpc((cb) => vfioAdmin.regionWrite({ pid: spdk.pid, deviceFd, index: CONFIG_REGION, offset: BigInt(PCI_COMMAND), data }, cb));
  }
  /** A 64 KiB BAR2 range of the device as a dma-buf in spdk's fd table. */
  async function exportRange(deviceFd: number): Promise<number> {
    const value = { regionIndex: BAR2, openFlags: O_RDWR, flags: 0, dmaRanges: [{ offset: 0n, length: BigInt(SIZE) }] };
    return (await rpc<vfio.DeviceFeatureResponse>((cb) => vfioAdmin.deviceFeature({ pid: spdk.pid, deviceFd, argsz: 0, flags: GET, payload: { $case: 'dmaBuf', value } }, cb))).fd;
  }
  /** The NIC's driver attaching to spdk's fd with the given importer ops. */
  function attach(fd: number, mode: { dynamic: boolean; peer2peer: boolean }): Promise<dmabuf.AttachResponse> {
    return rpc((cb) => raw.attach({ pid: spdk.pid, fd, importerPid: nic.pid, importerBdf: NIC1, ...mode, shm: undefined }, cb));
  }
  const attachments = async (bufferId: bigint): Promise<dmabuf.AttachmentInfo[]> => (await nic.bufInfo()).find((b) => b.bufferId === bufferId)?.attachments ?? [];
  const reset = (deviceFd: number): Promise<unknown> => rpc((cb) => vfioAdmin.reset({ pid: spdk.pid, deviceFd }, cb));

  describe('upstream (no pin)', () => {
    let fd: number;
    before(async () => {
      fd = await exportRange(upstreamFd);
    });
    after(async () => {
      await spdk.closeFd(fd);
    });

    it('static importer (no importer ops, no move_notify): EOPNOTSUPP, whatever peer2peer it asks for', async () => {
      for (const peer2peer of [false, true]) {
        const error = await expectErrno(attach(fd, { dynamic: false, peer2peer }), 'EOPNOTSUPP');
        expect(error.message).to.include(NEEDS_P2P);
      }
      expect((await nic.bufInfo()).every((b) => b.attachments.length === 0)).to.equal(true);
    });

    it('dynamic importer without peer2peer: EOPNOTSUPP', async () => {
      const error = await expectErrno(attach(fd, { dynamic: true, peer2peer: false }), 'EOPNOTSUPP');
      expect(error.message).to.include(NEEDS_P2P);
    });

    it('dynamic peer2peer importer: attaches and maps peer to peer; a pin is EOPNOTSUPP (vfio has no ->pin)', async () => {
      const importer = await nic.importDmaBuf({ fd, holderPid: spdk.pid, importerBdf: NIC1 });
      expect((await importer.map()).mapType).to.equal(dmabuf.DmaMapType.DMA_MAP_TYPE_BUS_ADDR);
      expect(await attachments(importer.bufferId)).to.deep.equal([
        { attachmentId: importer.attachmentId, importerPid: nic.pid, importerBdf: NIC1, dynamic: true, peer2peer: true, mapped: true, pinned: false },
      ]);
      const refused = await rejection(importer.pin());
      expect(String(refused)).to.include('EOPNOTSUPP').and.to.include('does not support pinning');
      expect((await attachments(importer.bufferId))[0]?.pinned).to.equal(false);
      await importer.detach();
    });
  });

  describe('the pin variant (Bind.variants.allow_pin)', () => {
    let fd: number;
    before(async () => {
      fd = await exportRange(pinVariantFd);
    });
    after(async () => {
      await spdk.closeFd(fd);
    });

    it('static importer: still EOPNOTSUPP, refused at attach before any pin', async () => {
      const error = await expectErrno(attach(fd, { dynamic: false, peer2peer: true }), 'EOPNOTSUPP');
      expect(error.message).to.include(NEEDS_P2P);
      expect((await rpc<vfio.ListDevicesResponse>((cb) => vfioAdmin.listDevices({}, cb))).dmaBufs.every((b) => b.pins === 0)).to.equal(true);
    });

    it('dynamic peer2peer importer that pins: VFIO_DEVICE_RESET is EINVAL while pinned, telling nobody; after unpin the reset revokes and restores', async () => {
      const notices: MoveNotice[] = [];
      const importer: DmaBufImporter = await nic.importDmaBuf({ fd, holderPid: spdk.pid, importerBdf: NIC1, onMoveNotify: (notice) => void notices.push(notice) });
      await importer.pin();
      expect((await attachments(importer.bufferId))[0]).to.include({ dynamic: true, peer2peer: true, pinned: true });

      const error = await expectErrno(reset(pinVariantFd), 'EINVAL');
      expect(error.message).to.include('pinned');
      expect(notices).to.deep.equal([]);

      await importer.unpin();
      await reset(pinVariantFd);
      expect(notices, 'move_notify of the revoke and of the restore').to.have.length(2);
      await importer.detach();
    });
  });

  describe('memory that needs no peer2peer', () => {
    it('static importer of a system-heap buffer: attaches and maps', async () => {
      const { fd, bufferId } = await spdk.heapAllocate(SIZE);
      const { attachmentId } = await rpc<dmabuf.AttachResponse>((cb) =>
        raw.attach({ pid: spdk.pid, fd, importerPid: nic.pid, importerBdf: '', dynamic: false, peer2peer: false, shm: { id: nic.shmId } }, cb),
      );
      const mapping = await rpc<dmabuf.MapAttachmentResponse>((cb) => raw.mapAttachment({ pid: nic.pid, attachmentId }, cb));
      expect(mapping.transport).to.equal(dmabuf.Transport.TRANSPORT_SHARED_MEMORY);
      expect(await attachments(bufferId)).to.deep.equal([{ attachmentId, importerPid: nic.pid, importerBdf: '', dynamic: false, peer2peer: false, mapped: true, pinned: false }]);
      await rpc((cb) => raw.detach({ pid: nic.pid, attachmentId }, cb));
      await spdk.closeFd(fd);
    });
  });
});
