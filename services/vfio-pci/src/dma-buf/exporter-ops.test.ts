import { expect } from 'chai';
import { DOORBELL_BAR, DOORBELL_WINDOW, DOORBELLS, expectErrno, harness, MiB, NVME, NVME_BARS, PAGE, PID, WITH_DOORBELLS, type Harness } from '../testing/harness';
import { VFIO_PCI_CONFIG_REGION_INDEX as CONFIG } from '../uapi/vfio';

async function setup(ranges = [{ offset: 0n, length: PAGE }]): Promise<Harness & { fd: number; buf: number; handle: string }> {
  const h = harness();
  const fd = await h.open();
  const buf = await h.exportBuf(fd, 2, ranges);
  return { ...h, fd, buf, handle: h.vfio.buffers()[0]!.handle };
}

const CMB = NVME_BARS[1]!.busAddress;

describe('the exporter ops the registry calls', () => {
  it('attach: EOPNOTSUPP without peer2peer (checked first), ENODEV while revoked', async () => {
    const h = await setup();
    h.vfio.attach(h.handle, true);
    await expectErrno(async () => h.vfio.attach(h.handle, false), 'EOPNOTSUPP', 'peer2peer');
    await h.vfio.regionWrite(PID, h.fd, CONFIG, 4n, new Uint8Array([0, 0]));
    await expectErrno(async () => h.vfio.attach(h.handle, false), 'EOPNOTSUPP');
    await expectErrno(async () => h.vfio.attach(h.handle, true), 'ENODEV', 'revoked');
  });

  it('map: the ranges in order, split at segment boundaries, dma address = BAR bus address + offset', async () => {
    const h = await setup([
      { offset: 2n * MiB - PAGE, length: 2n * PAGE },
      { offset: 0n, length: PAGE },
    ]);
    expect(await h.vfio.map(h.handle)).to.deep.equal([
      { segment: `${NVME}-bar2-c1-g0`, segmentOffset: 0x10_0000 - 0x1000, length: 0x1000, dmaAddress: CMB + 2n * MiB - PAGE },
      { segment: `${NVME}-bar2-c2-g0`, segmentOffset: 0, length: 0x1000, dmaAddress: CMB + 2n * MiB },
      { segment: `${NVME}-bar2-c0-g0`, segmentOffset: 0, length: 0x1000, dmaAddress: CMB },
    ]);
  });

  it('map: ENODEV while revoked, and again after un-revoke it maps', async () => {
    const h = await setup();
    await h.vfio.regionWrite(PID, h.fd, CONFIG, 4n, new Uint8Array([0, 0]));
    await expectErrno(h.vfio.map(h.handle), 'ENODEV');
    await h.vfio.regionWrite(PID, h.fd, CONFIG, 4n, new Uint8Array([2, 0]));
    expect(await h.vfio.map(h.handle)).to.have.length(1);
  });

  it('map of a register BAR fails as the PCI side says: it has no segments', async () => {
    const h = harness();
    const fd = await h.open();
    await h.exportBuf(fd, 0, [{ offset: 0n, length: PAGE }]);
    await expectErrno(h.vfio.map(h.vfio.buffers()[0]!.handle), 'EINVAL', 'no segments');
  });

  it('map of a register BAR window: its segments from the window start, dma address = BAR bus address + BAR offset', async () => {
    const h = harness({ functions: WITH_DOORBELLS });
    const fd = await h.open(DOORBELLS);
    await h.exportBuf(fd, 0, [{ offset: DOORBELL_WINDOW.offset + PAGE, length: PAGE }]);
    expect(await h.vfio.map(h.vfio.buffers()[0]!.handle)).to.deep.equal([
      { segment: `${DOORBELLS}-bar0-c0-g0`, segmentOffset: 0x1000, length: 0x1000, dmaAddress: DOORBELL_BAR.busAddress + DOORBELL_WINDOW.offset + PAGE },
    ]);
  });

  it('pin and CPU access are refused upstream (EOPNOTSUPP)', async () => {
    const h = await setup();
    await expectErrno(async () => h.vfio.pin(h.handle), 'EOPNOTSUPP', 'dynamic');
    await expectErrno(h.vfio.cpuMap(h.handle), 'EOPNOTSUPP', 'CPU');
  });

  it('fence: the BAR moves to fresh segments, so the next map names new files', async () => {
    const h = await setup();
    const before = await h.vfio.map(h.handle);
    await h.vfio.fence(h.handle);
    expect(h.log.at(-1)).to.equal(`relocate ${NVME} bar2`);
    const after = await h.vfio.map(h.handle);
    expect(after[0]!.segment).to.equal(`${NVME}-bar2-c0-g1`);
    expect(after[0]!.segment).to.not.equal(before[0]!.segment);
  });

  it('ENOENT for a handle vfio-pci does not know, once released too', async () => {
    const h = await setup();
    await h.registry.closeFd(PID, h.buf);
    await expectErrno(h.vfio.map(h.handle), 'ENOENT');
    await expectErrno(async () => h.vfio.attach('vfio-dmabuf:x#9', true), 'ENOENT');
  });
});
