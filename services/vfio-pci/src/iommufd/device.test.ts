import { expect } from 'chai';
import { IOMMU_MSI_WINDOW } from '../ports/iommu-port';
import { expectErrno, FN1, PAGE, PID } from '../testing/harness';
import { DMA_DEVICE, IOVA, type IommufdHarness, iommufdHarness, VA } from '../testing/iommufd-fixture';
import { VFIO_DEVICE_ATTACH_PASID, VFIO_DEVICE_BIND_FLAG_TOKEN, VFIO_PCI_CONFIG_REGION_INDEX } from '../uapi/vfio';

const bind = (h: IommufdHarness, iommufd = h.ictx, flags = 0, fd = h.dev): Promise<number> => h.vfio.bindIommufd(PID, fd, { flags, iommufd });
const attachPt = (h: IommufdHarness, ptId: number, flags = 0, fd = h.dev): Promise<number> => h.vfio.attachIommufdPt(PID, fd, { flags, ptId, pasid: 0 });
const objects = (h: IommufdHarness): ReturnType<IommufdHarness['vfio']['iommufd']['contexts']>[number]['objects'] => h.vfio.iommufd.contexts()[0]!.objects;

describe('vfio device fds and iommufd: bind, attach, detach and the group’s container', () => {
  describe('legacy device files (OpenDevice)', () => {
    it('reach config space and regions without any iommufd, and their function’s DMA stays blocked', async () => {
      const h = await iommufdHarness();
      expect(await h.vfio.regionRead(PID, h.dev, VFIO_PCI_CONFIG_REGION_INDEX, 0n, 2)).to.have.length(2);
      expect(h.iommu.domainOf(DMA_DEVICE)).to.equal(undefined);
    });
  });

  describe('VFIO_DEVICE_BIND_IOMMUFD', () => {
    it('EINVAL for a negative iommufd or unknown flags', async () => {
      const h = await iommufdHarness();
      await expectErrno(bind(h, -1), 'EINVAL');
      await expectErrno(bind(h, h.ictx, 2), 'EINVAL', 'flags 0x2');
    });

    it('EINVAL for a second bind of the same file', async () => {
      const h = await iommufdHarness();
      await bind(h);
      await expectErrno(bind(h), 'EINVAL', 'bound to an iommufd already');
    });

    it('EINVAL for the VF token: no function here is an SR-IOV PF or VF', async () => {
      const h = await iommufdHarness();
      await expectErrno(bind(h, 99, VFIO_DEVICE_BIND_FLAG_TOKEN), 'EINVAL', 'VF token');
    });

    it('EBADF for an fd the caller does not hold; EBADFD for a file that is not an iommufd', async () => {
      const h = await iommufdHarness();
      await expectErrno(bind(h, 99), 'EBADF', 'pid');
      await expectErrno(bind(h, h.dev), 'EBADFD', 'is not an iommufd');
    });

    it('EINVAL when another file of the device is bound already', async () => {
      const h = await iommufdHarness();
      const second = await h.vfio.openDevice(PID, DMA_DEVICE);
      await bind(h);
      await expectErrno(bind(h, h.ictx, 0, second), 'EINVAL', 'through another device file');
    });

    it('ENODEV once the function went away', async () => {
      const h = await iommufdHarness();
      await h.vfio.unplugged(DMA_DEVICE);
      await expectErrno(bind(h), 'ENODEV');
    });

    it('returns the device object’s id, which IOMMU_DESTROY cannot remove; nothing is attached yet', async () => {
      const h = await iommufdHarness();
      const devid = await bind(h);
      expect(devid).to.equal(2);
      expect(objects(h).find((o) => o.id === devid)).to.deep.equal({ id: devid, type: 'device', bdf: DMA_DEVICE, hwptId: undefined });
      await expectErrno(h.vfio.iommufd.destroy(PID, h.ictx, devid), 'EBUSY');
      expect(h.iommu.domains.size).to.equal(0);
    });
  });

  describe('VFIO_DEVICE_ATTACH_IOMMUFD_PT', () => {
    it('EINVAL on a file that is not bound (legacy files need the bind for DMA mapping)', async () => {
      const h = await iommufdHarness();
      await expectErrno(attachPt(h, h.ioas), 'EINVAL', 'not bound');
    });

    it('EINVAL for unknown flags, then EOPNOTSUPP for PASID', async () => {
      const h = await iommufdHarness();
      await bind(h);
      await expectErrno(attachPt(h, 99, 2), 'EINVAL', 'flags 0x2');
      await expectErrno(attachPt(h, 99, VFIO_DEVICE_ATTACH_PASID), 'EOPNOTSUPP', 'PASID');
    });

    it('ENOENT for an unknown id, EINVAL for an object that is neither an IOAS nor a HWPT', async () => {
      const h = await iommufdHarness();
      const devid = await bind(h);
      await expectErrno(attachPt(h, 99), 'ENOENT');
      await expectErrno(attachPt(h, devid), 'EINVAL', 'is a device');
    });

    it('attaches to an automatic domain of the IOAS and returns the HWPT id; a second device joins the same domain', async () => {
      const h = await iommufdHarness();
      const hwpt = await h.attach();
      expect(objects(h).find((o) => o.id === hwpt)).to.deep.equal({ id: hwpt, type: 'hwpt-paging', ioasId: h.ioas, domainId: 1, bdfs: [DMA_DEVICE] });
      await h.vfio.bind(FN1);
      expect(await h.attach(await h.vfio.openDevice(PID, FN1))).to.equal(hwpt);
      expect([...h.iommu.domains.get(1)!.devices].sort()).to.deep.equal([DMA_DEVICE, FN1]);
    });

    it('EINVAL for a function that cannot reach a BAR the IOAS maps, in its domain or a new one; nothing is left behind', async () => {
      const h = await iommufdHarness();
      await h.attach();
      const [, buf] = await h.exportCmb();
      await h.mapFile(buf);
      await h.vfio.bind(FN1);
      h.iommu.unreachable.add(FN1);
      await expectErrno(h.attach(await h.vfio.openDevice(PID, FN1)), 'EINVAL', 'cannot reach');
      expect([...h.iommu.domains.keys()]).to.deep.equal([1]);
      expect(h.iommu.domainOf(FN1)).to.equal(undefined);
    });

    it('by HWPT id: into that domain; attaching again to another IOAS replaces, and an emptied automatic domain goes', async () => {
      const h = await iommufdHarness();
      const hwpt = await h.attach();
      expect(await attachPt(h, hwpt)).to.equal(hwpt);
      const second = await h.vfio.iommufd.ioasAlloc(PID, h.ictx, 0);
      const next = await attachPt(h, second);
      expect(next).to.not.equal(hwpt);
      expect(objects(h).map((o) => o.type)).to.deep.equal(['ioas', 'device', 'ioas', 'hwpt-paging']);
      expect([...h.iommu.domains.keys()]).to.deep.equal([2]);
      expect(h.iommu.domainOf(DMA_DEVICE)!.id).to.equal(2);
    });

    it('EADDRINUSE when the device’s MSI window meets a mapped area; nothing is attached', async () => {
      const h = await iommufdHarness();
      await h.map({ iova: IOMMU_MSI_WINDOW.start });
      await expectErrno(h.attach(), 'EADDRINUSE', 'meets the mapped area');
      expect(h.iommu.domains.size).to.equal(0);
      expect(objects(h).map((o) => o.type)).to.deep.equal(['ioas', 'device']);
    });

    it('EADDRINUSE when an area is off the 4 KiB alignment the domain brings', async () => {
      const h = await iommufdHarness();
      await h.map({ userVa: VA + 16n, length: 16n });
      await expectErrno(h.attach(), 'EADDRINUSE', 'not aligned');
    });

    it('pins lazily: the first attach pins what the IOAS maps, the last detach unpins it, the areas stay', async () => {
      const h = await iommufdHarness();
      await h.map({ length: 2n * PAGE });
      expect(h.memory.pins).to.equal(0);
      await h.attach();
      expect(h.memory.pins).to.equal(1);
      expect(h.iommu.mapped()).to.deep.equal(['1:0x100000+0x2000']);
      await h.vfio.detachIommufdPt(PID, h.dev, 0);
      expect(h.memory.pins).to.equal(0);
      expect(h.iommu.domains.size).to.equal(0);
      expect(await h.vfio.iommufd.ioasIovaRanges(PID, h.ictx, { ioasId: h.ioas, numIovas: 1, reserved: 0 })).to.deep.include({ alignment: 1n });
      await attachPt(h, h.ioas);
      expect(h.memory.pins).to.equal(1);
      expect(h.iommu.mapped()).to.deep.equal(['2:0x100000+0x2000']);
    });
  });

  describe('VFIO_DEVICE_DETACH_IOMMUFD_PT', () => {
    it('EINVAL on a file that is not bound, then for unknown flags; EOPNOTSUPP for PASID', async () => {
      const h = await iommufdHarness();
      await expectErrno(h.vfio.detachIommufdPt(PID, h.dev, 0), 'EINVAL', 'not bound');
      await bind(h);
      await expectErrno(h.vfio.detachIommufdPt(PID, h.dev, 2), 'EINVAL');
      await expectErrno(h.vfio.detachIommufdPt(PID, h.dev, 1), 'EOPNOTSUPP');
    });

    it('succeeds with nothing attached; detaching blocks the function’s DMA and keeps the IOAS’s areas', async () => {
      const h = await iommufdHarness();
      await bind(h);
      await h.vfio.detachIommufdPt(PID, h.dev, 0);
      await attachPt(h, h.ioas);
      await h.map();
      await h.vfio.detachIommufdPt(PID, h.dev, 0);
      expect(h.iommu.domainOf(DMA_DEVICE)).to.equal(undefined);
      expect(await h.unmap(IOVA, PAGE)).to.equal(PAGE);
    });
  });

  describe('VFIO_GROUP_SET_CONTAINER (SetContainer: the device fd names its group)', () => {
    const setContainer = (h: IommufdHarness, container = h.ictx, fd = h.dev): Promise<void> => h.vfio.setContainer(PID, fd, container);

    it('EBUSY when the device is bound through a device file', async () => {
      const h = await iommufdHarness();
      await bind(h);
      await expectErrno(setContainer(h, 99), 'EBUSY', 'its group cannot be used');
    });

    it('EBADF for an fd not held, EINVAL for a group in a container already, EBADFD for a file not an iommufd', async () => {
      const h = await iommufdHarness('vfio-container');
      await expectErrno(setContainer(h, 99), 'EBADF');
      await expectErrno(setContainer(h, h.dev), 'EBADFD', 'is not an iommufd');
      await setContainer(h);
      await expectErrno(setContainer(h), 'EINVAL', 'in a container already');
    });

    it('ENODEV once the function went away', async () => {
      const h = await iommufdHarness('vfio-container');
      await h.vfio.unplugged(DMA_DEVICE);
      await expectErrno(setContainer(h), 'ENODEV');
    });

    it('makes a compat IOAS (or uses the one there is) and attaches the function to it', async () => {
      const h = await iommufdHarness('vfio-container');
      await setContainer(h);
      const listing = h.vfio.iommufd.contexts()[0]!;
      expect(listing.compatIoasId).to.equal(2);
      expect(listing.objects.map((o) => o.type)).to.deep.equal(['ioas', 'ioas', 'device', 'hwpt-paging']);
      await h.vfio.bind(FN1);
      await setContainer(h, h.ictx, await h.vfio.openDevice(PID, FN1));
      expect(h.vfio.iommufd.contexts()[0]!.compatIoasId).to.equal(2);
      expect([...h.iommu.domains.get(1)!.devices].sort()).to.deep.equal([DMA_DEVICE, FN1]);
    });

    it('a file that came through its group cannot bind (EINVAL), and the cdev attach ioctls are not its (ENOTTY)', async () => {
      const h = await iommufdHarness();
      await setContainer(h);
      await expectErrno(bind(h), 'EINVAL', 'through its group');
      await expectErrno(attachPt(h, h.ioas), 'ENOTTY');
      await expectErrno(h.vfio.detachIommufdPt(PID, h.dev, 0), 'ENOTTY');
      const second = await h.vfio.openDevice(PID, DMA_DEVICE);
      await expectErrno(bind(h, h.ictx, 0, second), 'EBUSY', 'in a container');
    });

    it('a failed attach leaves the group out of the container (the compat IOAS stays)', async () => {
      const h = await iommufdHarness('vfio-container');
      await h.vfio.iommufd.vfioIoas(PID, h.ictx, { op: 1, ioasId: h.ioas, reserved: 0 });
      await h.map({ userVa: 0x1000n });
      await expectErrno(setContainer(h), 'EFAULT');
      expect(objects(h).map((o) => o.type)).to.deep.equal(['ioas']);
      await h.unmap(IOVA, PAGE);
      await setContainer(h);
    });
  });
});
