import * as fs from 'node:fs';
import { expect } from 'chai';
import { RegistrySession } from '@p2p/dmabuf-client';
import { vfio } from '@p2p/proto';
import { asAdmin, type ServiceProcess, startServiceProcess, tempShmDir } from '@p2p/testing';
import { O_RDWR, vfioUapi } from '@p2p/vfio-pci';
import { expectErrno, rpc } from '../harness/rpc';

const ACCEL0 = '0000:07:00.0';
const NVME1 = '0000:08:00.0';
const BAR2 = 2;
const { VFIO_DEVICE_FEATURE_DMA_BUF, VFIO_DEVICE_FEATURE_GET, VFIO_DEVICE_FEATURE_PROBE, VFIO_DEVICE_FEATURE_SET } = vfioUapi;
const GET = VFIO_DEVICE_FEATURE_DMA_BUF | VFIO_DEVICE_FEATURE_GET;
const PROBE = GET | VFIO_DEVICE_FEATURE_PROBE;
/** The message fragment of featureDmaBuf()'s EOPNOTSUPP. */
const CANNOT_EXPORT = 'cannot export dma-bufs';

/**
 * Bind.variants as a client selects them: the driver without dma-buf export
 * support (`no_dma_buf_export`, a variant driver whose pci_ops has no
 * get_dmabuf_phys) refuses VFIO_DEVICE_FEATURE_DMA_BUF with EOPNOTSUPP, PROBE
 * included, after vfio_ioctl_device_feature()'s own checks and before
 * vfio_check_feature()'s; a Variants without the field keeps export.
 * pci-emu, the registry and vfio-pci as processes.
 */
describe('vfio-pci variants over gRPC: the driver without dma-buf export (Bind.variants.no_dma_buf_export)', function () {
  this.timeout(60_000);
  let shmDir: string;
  let services: ServiceProcess[] = [];
  let admin: vfio.VfioPciServiceClient;
  let spdk: RegistrySession;
  let accelFd: number;
  let nvmeFd: number;

  before(async () => {
    shmDir = tempShmDir();
    const env = { P2P_SHM_DIR: shmDir, LOG_LEVEL: 'warn' };
    const pciEmu = await startServiceProcess('pci-emu', 'PCI_EMU', { env });
    const registry = await startServiceProcess('dmabuf-registry', 'DMABUF_REGISTRY', { env: { ...env, PCI_EMU_ADDRESS: pciEmu.address } });
    const vfioPci = await startServiceProcess('vfio-pci', 'VFIO_PCI', { env: { ...env, PCI_EMU_ADDRESS: pciEmu.address, DMABUF_REGISTRY_ADDRESS: registry.address } });
    services = [vfioPci, registry, pciEmu];
    const root = asAdmin(shmDir);
    admin = new vfio.VfioPciServiceClient(vfioPci.address, root.credentials, root.options);
    spdk = await RegistrySession.open(registry.address, { name: 'spdk', shmDir });
    // accel0 behind the variant driver; nvme1 with a Variants that leaves the field unset.
    await rpc((cb) => admin.bind({ bdf: ACCEL0, variants: { dmaBufLayout: vfio.DmaBufLayout.DMA_BUF_LAYOUT_UNSPECIFIED, allowPin: false, cpuMmap: false, noDmaBufExport: true } }, cb));
    await rpc((cb) => admin.bind({ bdf: NVME1, variants: { dmaBufLayout: vfio.DmaBufLayout.DMA_BUF_LAYOUT_UNSPECIFIED, allowPin: false, cpuMmap: false } }, cb));
    accelFd = (await rpc<vfio.OpenDeviceResponse>((cb) => admin.openDevice({ pid: spdk.pid, bdf: ACCEL0 }, cb))).fd;
    nvmeFd = (await rpc<vfio.OpenDeviceResponse>((cb) => admin.openDevice({ pid: spdk.pid, bdf: NVME1 }, cb))).fd;
  });

  after(async () => {
    await spdk?.close().catch(() => undefined);
    admin?.close();
    for (const service of services) await service.stop();
    fs.rmSync(shmDir, { recursive: true, force: true });
  });

  const feature = (deviceFd: number, flags: number, argsz = 0): Promise<vfio.DeviceFeatureResponse> =>
    rpc((cb) =>
      admin.deviceFeature(
        {
          pid: spdk.pid,
          deviceFd,
          argsz,
          flags,
          payload: { $case: 'dmaBuf', value: { regionIndex: BAR2, openFlags: O_RDWR, flags: 0, dmaRanges: [{ offset: 0n, length: 64n * 1024n }] } },
        },
        cb,
      ),
    );
  const listing = async (bdf: string): Promise<vfio.DeviceListing | undefined> =>
    (await rpc<vfio.ListDevicesResponse>((cb) => admin.listDevices({}, cb))).devices.find((d) => d.bdf === bdf);

  it('lists the variant on the device bound with it, and not on one whose Variants leaves it unset', async () => {
    expect((await listing(ACCEL0))?.variants?.noDmaBufExport).to.equal(true);
    expect((await listing(NVME1))?.variants?.noDmaBufExport).to.equal(false);
  });

  it('EINVAL first for an argsz below the 8-byte header (vfio_ioctl_device_feature() runs before the driver)', async () => {
    await expectErrno(feature(accelFd, GET, 4), 'EINVAL');
  });

  it('EOPNOTSUPP for PROBE|GET: the feature is not there to probe', async () => {
    const error = await expectErrno(feature(accelFd, PROBE), 'EOPNOTSUPP');
    expect(error.message).to.include(CANNOT_EXPORT);
  });

  it('EOPNOTSUPP for GET, exporting nothing', async () => {
    const error = await expectErrno(feature(accelFd, GET), 'EOPNOTSUPP');
    expect(error.message).to.include(CANNOT_EXPORT);
    expect((await listing(ACCEL0))?.dmaBufs).to.equal(0);
  });

  it("EOPNOTSUPP for SET too, before vfio_check_feature()'s EINVAL", async () => {
    const error = await expectErrno(feature(accelFd, VFIO_DEVICE_FEATURE_DMA_BUF | VFIO_DEVICE_FEATURE_SET), 'EOPNOTSUPP');
    expect(error.message).to.include(CANNOT_EXPORT);
  });

  it('a device bound with the field unset probes and exports', async () => {
    expect((await feature(nvmeFd, PROBE)).fd).to.equal(-1);
    const { fd } = await feature(nvmeFd, GET);
    expect((await listing(NVME1))?.dmaBufs).to.equal(1);
    await spdk.closeFd(fd);
  });
});
