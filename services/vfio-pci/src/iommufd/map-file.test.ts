import { expect } from 'chai';
import { ErrnoError } from '@p2p/errno';
import { expectErrno, FN1, MiB, PAGE, PID, settle } from '../testing/harness';
import { DMA_DEVICE, EXPORTER, FIXED, IOVA, type IommufdHarness, iommufdHarness, RW } from '../testing/iommufd-fixture';
import { IOMMU_IOAS_MAP_READABLE } from '../uapi/iommufd';
import { PCI_COMMAND, PCI_COMMAND_MEMORY } from '../uapi/pci-regs';
import { U64_MAX } from '../uapi/u64';
import { VFIO_PCI_CONFIG_REGION_INDEX } from '../uapi/vfio';

const le16 = (value: number): Uint8Array => new Uint8Array([value & 0xff, value >>> 8]);
/** NVME's BAR2 in the fake's default functions. */
const CMB_BAR = 2;

/** PCI_COMMAND of the exporter, written through its device fd. */
function command(h: IommufdHarness, exporterFd: number, value: number): Promise<number> {
  return h.vfio.regionWrite(PID, exporterFd, VFIO_PCI_CONFIG_REGION_INDEX, BigInt(PCI_COMMAND), le16(value));
}

describe('iommufd: IOMMU_IOAS_MAP_FILE of a vfio dma-buf, and its revoke', () => {
  describe('the checks, errno by errno and in order', () => {
    it('(1) EOPNOTSUPP for unknown flags, (2) EOVERFLOW for ULONG_MAX, (3) EINVAL without READ or WRITE, (4) ENOENT for the IOAS', async () => {
      const h = await iommufdHarness();
      await expectErrno(h.mapFile(-1, { flags: RW | 8, iova: U64_MAX }), 'EOPNOTSUPP');
      await expectErrno(h.mapFile(-1, { flags: FIXED, iova: U64_MAX }), 'EOVERFLOW');
      await expectErrno(h.mapFile(-1, { flags: FIXED }), 'EINVAL', 'neither READABLE nor WRITEABLE');
      await expectErrno(h.mapFile(-1, { ioasId: 99, length: 0n }), 'ENOENT');
    });

    it('(5) EINVAL for length 0, EOVERFLOW for start + length past 2^64, then EBADF for an fd not held', async () => {
      const h = await iommufdHarness();
      await expectErrno(h.mapFile(-1, { length: 0n }), 'EINVAL', 'length is 0');
      await expectErrno(h.mapFile(-1, { start: U64_MAX - PAGE + 2n }), 'EOVERFLOW');
      await expectErrno(h.mapFile(-1), 'EBADF');
      await expectErrno(h.mapFile(42), 'EBADF');
    });

    it('EOPNOTSUPP for a dma-buf of another exporter', async () => {
      const h = await iommufdHarness();
      await expectErrno(h.mapFile(h.registry.foreignDmaBuf(PID)), 'EOPNOTSUPP', 'another exporter');
    });

    it('EINVAL for a range that does not end inside the buffer', async () => {
      const h = await iommufdHarness();
      const [, buf] = await h.exportCmb(0n, 4n * PAGE);
      await expectErrno(h.mapFile(buf, { start: 3n * PAGE, length: 2n * PAGE }), 'EINVAL', 'does not end inside');
    });

    it('ENODEV for a revoked buffer (before the range count is looked at)', async () => {
      const h = await iommufdHarness();
      const [exporterFd] = await h.exportCmb();
      const multi = await h.exportBuf(exporterFd, CMB_BAR, [
        { offset: 0n, length: PAGE },
        { offset: MiB, length: PAGE },
      ]);
      await command(h, exporterFd, 0);
      await expectErrno(h.mapFile(multi), 'ENODEV', 'revoked');
    });

    it('EOPNOTSUPP for a buffer of more than one range', async () => {
      const h = await iommufdHarness();
      const [exporterFd] = await h.exportCmb();
      const multi = await h.exportBuf(exporterFd, CMB_BAR, [
        { offset: 0n, length: PAGE },
        { offset: MiB, length: PAGE },
      ]);
      await expectErrno(h.mapFile(multi), 'EOPNOTSUPP', '2 ranges');
    });

    it('ENODEV for a buffer whose device was closed (revoked for good)', async () => {
      const h = await iommufdHarness();
      const [exporterFd, buf] = await h.exportCmb();
      await h.registry.closeFd(PID, exporterFd);
      await expectErrno(h.mapFile(buf), 'ENODEV');
    });

    it('another file (not a dma-buf) maps, but cannot be pinned: EINVAL once a domain needs it', async () => {
      const h = await iommufdHarness();
      const other = await h.vfio.iommufd.open(PID, 'iommu');
      expect(await h.mapFile(other)).to.equal(IOVA);
      await expectErrno(h.attach(), 'EINVAL', 'memfd_pin_folios');
      await h.unmap(IOVA, PAGE);
      await h.vfio.attachIommufdPt(PID, h.dev, { flags: 0, ptId: h.ioas, pasid: 0 });
      await expectErrno(h.mapFile(other), 'EINVAL', 'memfd_pin_folios');
    });
  });

  describe('mapping', () => {
    it('maps the buffer’s BAR range into every domain as MMIO, peer to peer, at the offset asked', async () => {
      const h = await iommufdHarness();
      const hwpt = await h.attach();
      const [, buf] = await h.exportCmb(MiB, 4n * PAGE);
      expect(await h.mapFile(buf, { start: PAGE, length: 2n * PAGE, flags: FIXED | IOMMU_IOAS_MAP_READABLE })).to.equal(IOVA);
      const domain = h.iommu.domainOf(DMA_DEVICE)!;
      expect(domain.mappings).to.deep.equal([{ iova: IOVA, length: 2n * PAGE, prot: 1, target: { kind: 'bar', bdf: EXPORTER, bar: CMB_BAR, offset: MiB + PAGE } }]);
      expect(h.memory.pins).to.equal(0);
      expect(h.vfio.iommufd.contexts()[0]!.objects.find((o) => o.id === hwpt)).to.include({ type: 'hwpt-paging', domainId: domain.id });
    });

    it('without a domain maps nothing until a device attaches', async () => {
      const h = await iommufdHarness();
      const [, buf] = await h.exportCmb();
      await h.mapFile(buf, { flags: RW });
      expect(h.iommu.mapped()).to.deep.equal([]);
      await h.attach();
      expect(h.iommu.mapped()).to.have.length(1);
    });

    it('a failed map leaves no import behind: the buffer leaves its device once its fd is closed', async () => {
      const h = await iommufdHarness();
      await h.attach();
      const [, buf] = await h.exportCmb();
      h.iommu.failNextMap = new ErrnoError('EIO', 'platform down');
      await expectErrno(h.mapFile(buf), 'EIO');
      await h.registry.closeFd(PID, buf);
      expect(h.vfio.devices().find((d) => d.bdf === EXPORTER)!.dmaBufs).to.equal(0);
    });
  });

  describe('revoke (vfio_pci_dma_buf_move() -> iopt_revoke_notify())', () => {
    async function mapped(): Promise<IommufdHarness & { exporterFd: number; buf: number }> {
      const h = await iommufdHarness();
      await h.attach();
      const [exporterFd, buf] = await h.exportCmb();
      await h.mapFile(buf, { length: 4n * PAGE });
      return { ...h, exporterFd, buf };
    }

    it('clearing the exporter’s MEM unmaps the area from the domain before the config write returns', async () => {
      const h = await mapped();
      const mark = h.log.length;
      const open = h.iommu.holdUnmaps();
      let done = false;
      const write = command(h, h.exporterFd, 0).then(() => (done = true));
      await settle();
      expect(done).to.equal(false);
      open();
      await write;
      expect(h.iommu.mapped()).to.deep.equal([]);
      expect(h.since(mark).filter((line) => line.startsWith('iommu') || line.startsWith('config-write'))).to.deep.equal([
        'iommu unmapping 1 0x100000+0x4000',
        'iommu unmapped 1 0x100000+0x4000',
        `config-write ${EXPORTER} 0x4/2 0x0`,
      ]);
    });

    it('a revoke that comes while MAP_FILE is mapping waits for the map, then unmaps it before it returns', async () => {
      const h = await iommufdHarness();
      await h.attach();
      const [exporterFd, buf] = await h.exportCmb();
      const open = h.iommu.holdMaps();
      const map = h.mapFile(buf);
      await settle();
      let revoked = false;
      const write = command(h, exporterFd, 0).then(() => (revoked = true));
      await settle();
      expect(revoked).to.equal(false);
      open();
      await Promise.all([map, write]);
      expect(h.iommu.mapped()).to.deep.equal([]);
    });

    it('is for good: setting MEM again maps nothing back; the IOVA stays taken until userspace unmaps, then MAP_FILE works again', async () => {
      const h = await mapped();
      await command(h, h.exporterFd, 0);
      await command(h, h.exporterFd, PCI_COMMAND_MEMORY);
      expect(h.iommu.mapped()).to.deep.equal([]);
      await expectErrno(h.mapFile(h.buf), 'EEXIST');
      expect(h.vfio.iommufd.contexts()[0]!.objects.find((o) => o.type === 'ioas')).to.deep.include({
        areas: [{ iova: IOVA, length: 4n * PAGE, prot: 3, kind: 'dmabuf', revoked: true }],
      });
      const mark = h.log.length;
      expect(await h.unmap(IOVA, 4n * PAGE)).to.equal(4n * PAGE);
      expect(h.since(mark).filter((line) => line.startsWith('iommu'))).to.deep.equal([]);
      expect(await h.mapFile(h.buf)).to.equal(IOVA);
      expect(h.iommu.mapped()).to.have.length(1);
    });

    it('a device attached after the revoke gets nothing mapped for the area', async () => {
      const h = await mapped();
      await command(h, h.exporterFd, 0);
      await h.vfio.detachIommufdPt(PID, h.dev, 0);
      await h.vfio.attachIommufdPt(PID, h.dev, { flags: 0, ptId: h.ioas, pasid: 0 });
      expect(h.iommu.mapped()).to.deep.equal([]);
    });

    it('the exporter’s close revokes for good and unmaps, even after the dma-buf’s fd was closed', async () => {
      const h = await mapped();
      await h.registry.closeFd(PID, h.buf);
      expect(h.iommu.mapped()).to.have.length(1);
      expect(h.vfio.devices().find((d) => d.bdf === EXPORTER)!.dmaBufs).to.equal(1);
      await h.registry.closeFd(PID, h.exporterFd);
      expect(h.iommu.mapped()).to.deep.equal([]);
    });

    it('unmapping the last area of a buffer whose fd is closed lets the buffer go', async () => {
      const h = await mapped();
      await h.registry.closeFd(PID, h.buf);
      await h.unmap(IOVA, 4n * PAGE);
      expect(h.vfio.devices().find((d) => d.bdf === EXPORTER)!.dmaBufs).to.equal(0);
    });

    it('reaches every domain and every area of the buffer', async () => {
      const h = await mapped();
      const second = await h.vfio.iommufd.ioasAlloc(PID, h.ictx, 0);
      await h.vfio.bind(FN1);
      await h.attach(await h.vfio.openDevice(PID, FN1), second);
      await h.vfio.iommufd.ioasCopy(PID, h.ictx, { flags: RW | FIXED, srcIoasId: h.ioas, dstIoasId: second, length: PAGE, srcIova: IOVA, dstIova: 8n * MiB });
      await h.mapFile(h.buf, { iova: IOVA + MiB, length: PAGE });
      expect(h.iommu.mapped()).to.deep.equal(['1:0x100000+0x4000', '1:0x200000+0x1000', '2:0x800000+0x1000']);
      await command(h, h.exporterFd, 0);
      expect(h.iommu.mapped()).to.deep.equal([]);
    });
  });
});
