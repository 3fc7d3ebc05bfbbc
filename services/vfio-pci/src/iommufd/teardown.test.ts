import { expect } from 'chai';
import { ErrnoError } from '@p2p/errno';
import { harness, type Harness, PAGE, PID } from '../testing/harness';
import { DMA_DEVICE, EXPORTER, IOVA, type IommufdHarness, iommufdHarness, RW, VA } from '../testing/iommufd-fixture';

/** A process with its DMA device bound and attached, its memory and an exporter's dma-buf mapped. */
async function busy(): Promise<IommufdHarness & { exporterFd: number; buf: number }> {
  const h = await iommufdHarness();
  await h.attach();
  await h.map({ length: 2n * PAGE });
  const [exporterFd, buf] = await h.exportCmb();
  await h.mapFile(buf, { iova: IOVA + 16n * PAGE });
  return { ...h, exporterFd, buf };
}

/** Nothing of the process's iommufd is left: no context, no domain, no pin, no dma-buf held. */
function expectAllGone(h: Harness): void {
  expect(h.vfio.iommufd.contexts()).to.deep.equal([]);
  expect(h.iommu.domains.size).to.equal(0);
  expect(h.memory.pins).to.equal(0);
  expect(h.vfio.devices().every((device) => device.dmaBufs === 0)).to.equal(true);
}

describe('iommufd teardown: mappings die with their process, their iommufd and their device', () => {
  it('process exit (every fd closed, lowest first: device, iommufd, exporter, dma-buf) unmaps, unpins and frees everything', async () => {
    const h = await busy();
    await h.registry.exitProcess(PID);
    expectAllGone(h);
  });

  it('process exit with the iommufd at a lower fd than the device: the context outlives its fd until the device is closed', async () => {
    const h = harness();
    const ictx = await h.vfio.iommufd.open(PID, 'iommu');
    const dev = await h.open(DMA_DEVICE);
    expect(ictx).to.be.below(dev);
    const ioas = await h.vfio.iommufd.ioasAlloc(PID, ictx, 0);
    await h.vfio.bindIommufd(PID, dev, { flags: 0, iommufd: ictx });
    await h.vfio.attachIommufdPt(PID, dev, { flags: 0, ptId: ioas, pasid: 0 });
    h.memory.mmap(PID, VA, PAGE);
    await h.vfio.iommufd.ioasMap(PID, ictx, { flags: RW, ioasId: ioas, reserved: 0, userVa: VA, length: PAGE, iova: 0n });
    await h.registry.exitProcess(PID);
    expectAllGone(h);
  });

  it('closing the iommufd while a device is bound keeps the context and its mappings until the device’s file is closed', async () => {
    const h = await busy();
    await h.registry.closeFd(PID, h.ictx);
    expect(h.vfio.iommufd.contexts()).to.have.length(1);
    expect(h.vfio.iommufd.contexts()[0]!.fileOpen).to.equal(false);
    expect(h.iommu.mapped()).to.have.length(2);
    expect(h.memory.pins).to.equal(1);
    await h.registry.closeFd(PID, h.dev);
    expect(h.vfio.iommufd.contexts()).to.deep.equal([]);
    expect(h.iommu.domains.size).to.equal(0);
    expect(h.memory.pins).to.equal(0);
  });

  it('closing the device detaches it and frees its domain; the IOAS keeps its areas, unpinned, until the iommufd goes', async () => {
    const h = await busy();
    await h.registry.closeFd(PID, h.dev);
    expect(h.iommu.domains.size).to.equal(0);
    expect(h.memory.pins).to.equal(0);
    const [ioas] = h.vfio.iommufd.contexts()[0]!.objects;
    expect(ioas).to.deep.include({ type: 'ioas', domains: [] });
    expect(ioas!.type === 'ioas' && ioas.areas.map((area) => area.kind)).to.deep.equal(['user', 'dmabuf']);
    await h.registry.closeFd(PID, h.ictx);
    expect(h.vfio.iommufd.contexts()).to.deep.equal([]);
    expect(h.vfio.devices().find((device) => device.bdf === EXPORTER)!.dmaBufs).to.equal(1);
    await h.registry.closeFd(PID, h.buf);
    expect(h.vfio.devices().find((device) => device.bdf === EXPORTER)!.dmaBufs).to.equal(0);
  });

  it('a surprise-removed device whose IOMMU domain is gone with the platform (pci-emu restarted) still leaves vfio-pci at its last close, its pages unpinned', async () => {
    const h = await busy();
    h.pci.unplug(DMA_DEVICE);
    await h.vfio.unplugged(DMA_DEVICE);
    // The new platform knows nothing of the domain: detach and unmap fail with ENOENT.
    h.iommu.domains.clear();
    const closed = await h.registry.closeFd(PID, h.dev).then(
      () => undefined,
      (error: unknown) => error,
    );
    expect(closed, 'the release reports the platform failure').to.be.instanceOf(ErrnoError).with.property('errno', 'ENOENT');
    expect(h.vfio.devices().map((device) => device.bdf), 'bound devices').to.not.include(DMA_DEVICE);
    expect(h.memory.pins).to.equal(0);
    const [ioas] = h.vfio.iommufd.contexts()[0]!.objects;
    expect(ioas).to.deep.include({ type: 'ioas', domains: [] });
  });

  it('an iommufd fd passed to another process keeps the context alive after the opener exits', async () => {
    const h = await busy();
    const kept = h.registry.sendFd(PID, h.ictx, PID + 1);
    await h.registry.exitProcess(PID);
    const [listing] = h.vfio.iommufd.contexts();
    expect(listing!.objects.map((object) => object.type)).to.deep.equal(['ioas']);
    expect(h.iommu.domains.size).to.equal(0);
    await h.registry.closeFd(PID + 1, kept);
    expectAllGone(h);
  });
});
