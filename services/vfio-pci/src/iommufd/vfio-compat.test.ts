import { expect } from 'chai';
import { IOMMU_APERTURE_END, IOMMU_MSI_WINDOW } from '../ports/iommu-port';
import { expectErrno, MiB, PAGE, PID } from '../testing/harness';
import { IOVA, type IommufdHarness, iommufdHarness, VA } from '../testing/iommufd-fixture';
import { U32_MAX, U64_MAX } from '../uapi/u64';
import {
  VFIO_DMA_CC_IOMMU,
  VFIO_DMA_MAP_FLAG_READ,
  VFIO_DMA_MAP_FLAG_VADDR,
  VFIO_DMA_MAP_FLAG_WRITE,
  VFIO_DMA_UNMAP_FLAG_ALL,
  VFIO_DMA_UNMAP_FLAG_GET_DIRTY_BITMAP,
  VFIO_IOMMU_INFO_CAPS,
  VFIO_IOMMU_INFO_PGSIZES,
  VFIO_NOIOMMU_IOMMU,
  VFIO_SPAPR_TCE_IOMMU,
  VFIO_TYPE1_IOMMU,
  VFIO_TYPE1v2_IOMMU,
  VFIO_UNMAP_ALL,
  VFIO_UPDATE_VADDR,
} from '../uapi/vfio';
import type { MapDmaCmd, UnmapDmaCmd } from './vfio-compat';

const RW = VFIO_DMA_MAP_FLAG_READ | VFIO_DMA_MAP_FLAG_WRITE;

/** A container with the DMA device's group in it. */
async function container(): Promise<IommufdHarness> {
  const h = await iommufdHarness('vfio-container');
  await h.vfio.setContainer(PID, h.dev, h.ictx);
  return h;
}

const mapDma = (h: IommufdHarness, cmd: Partial<MapDmaCmd> = {}): Promise<void> =>
  h.vfio.iommufd.vfioIommuMapDma(PID, h.ictx, { argsz: 32, flags: RW, vaddr: VA, iova: IOVA, size: PAGE, ...cmd });
const unmapDma = (h: IommufdHarness, cmd: Partial<UnmapDmaCmd> = {}): Promise<bigint> =>
  h.vfio.iommufd.vfioIommuUnmapDma(PID, h.ictx, { argsz: 24, flags: 0, iova: IOVA, size: PAGE, ...cmd });

describe('the type1 container on iommufd (vfio_compat.c), errno by errno and in order', () => {
  it('VFIO_GET_API_VERSION is 0, on a container and on /dev/iommu alike', async () => {
    const h = await iommufdHarness();
    expect(await h.vfio.iommufd.vfioGetApiVersion(PID, h.ictx)).to.equal(0);
  });

  describe('VFIO_CHECK_EXTENSION', () => {
    it('TYPE1, TYPE1v2 and UNMAP_ALL are there; NOIOMMU, UPDATE_VADDR and the rest are not', async () => {
      const h = await iommufdHarness('vfio-container');
      const check = (extension: number): Promise<number> => h.vfio.iommufd.vfioCheckExtension(PID, h.ictx, extension);
      expect(await Promise.all([VFIO_TYPE1_IOMMU, VFIO_TYPE1v2_IOMMU, VFIO_UNMAP_ALL].map(check))).to.deep.equal([1, 1, 1]);
      expect(await Promise.all([VFIO_SPAPR_TCE_IOMMU, VFIO_NOIOMMU_IOMMU, VFIO_UPDATE_VADDR, 6, 99].map(check))).to.deep.equal([0, 0, 0, 0, 0]);
    });

    it('DMA_CC_IOMMU: ENODEV with no compat IOAS, then 1 (every domain enforces coherency)', async () => {
      const h = await iommufdHarness('vfio-container');
      await expectErrno(h.vfio.iommufd.vfioCheckExtension(PID, h.ictx, VFIO_DMA_CC_IOMMU), 'ENODEV');
      await h.vfio.setContainer(PID, h.dev, h.ictx);
      expect(await h.vfio.iommufd.vfioCheckExtension(PID, h.ictx, VFIO_DMA_CC_IOMMU)).to.equal(1);
    });
  });

  describe('VFIO_SET_IOMMU', () => {
    it('EINVAL for a type other than TYPE1 and TYPE1v2, then ENODEV with no group in the container', async () => {
      const h = await iommufdHarness('vfio-container');
      await expectErrno(h.vfio.iommufd.vfioSetIommu(PID, h.ictx, VFIO_SPAPR_TCE_IOMMU), 'EINVAL');
      await expectErrno(h.vfio.iommufd.vfioSetIommu(PID, h.ictx, VFIO_TYPE1v2_IOMMU), 'ENODEV', 'no group');
    });

    it('TYPE1 is EINVAL once domains hold mappings; TYPE1v2 may be set any time, again and again', async () => {
      const h = await container();
      await h.vfio.iommufd.vfioSetIommu(PID, h.ictx, VFIO_TYPE1v2_IOMMU);
      await mapDma(h);
      await expectErrno(h.vfio.iommufd.vfioSetIommu(PID, h.ictx, VFIO_TYPE1_IOMMU), 'EINVAL', 'large pages');
      await h.vfio.iommufd.vfioSetIommu(PID, h.ictx, VFIO_TYPE1v2_IOMMU);
    });
  });

  describe('VFIO_IOMMU_GET_INFO', () => {
    it('EINVAL for argsz below 16, then ENODEV with no compat IOAS', async () => {
      const h = await iommufdHarness('vfio-container');
      await expectErrno(h.vfio.iommufd.vfioIommuGetInfo(PID, h.ictx, 15), 'EINVAL');
      await expectErrno(h.vfio.iommufd.vfioIommuGetInfo(PID, h.ictx, 16), 'ENODEV');
    });

    it('a short argsz gets the size the capabilities need and no chain', async () => {
      const h = await container();
      expect(await h.vfio.iommufd.vfioIommuGetInfo(PID, h.ictx, 16)).to.deep.equal({
        argsz: 24 + 16 + 16 + 2 * 16,
        flags: VFIO_IOMMU_INFO_PGSIZES | VFIO_IOMMU_INFO_CAPS,
        iovaPgsizes: PAGE,
        capOffset: 0,
        caps: [],
      });
    });

    it('a full argsz gets DMA_AVAIL then IOVA_RANGE (the aperture less the MSI window), chained', async () => {
      const h = await container();
      expect(await h.vfio.iommufd.vfioIommuGetInfo(PID, h.ictx, 88)).to.deep.equal({
        argsz: 88,
        flags: VFIO_IOMMU_INFO_PGSIZES | VFIO_IOMMU_INFO_CAPS,
        iovaPgsizes: PAGE,
        capOffset: 24,
        caps: [
          { id: 3, offset: 24, next: 40, avail: U32_MAX },
          {
            id: 1,
            offset: 40,
            next: 0,
            nrIovas: 2,
            ranges: [
              { start: 0n, last: IOMMU_MSI_WINDOW.start - 1n },
              { start: IOMMU_MSI_WINDOW.last + 1n, last: IOMMU_APERTURE_END - 1n },
            ],
          },
        ],
      });
    });

    it('an argsz that reaches part of the chain gets the capabilities and ranges that fit', async () => {
      const h = await container();
      const info = await h.vfio.iommufd.vfioIommuGetInfo(PID, h.ictx, 72);
      expect(info.capOffset).to.equal(0);
      expect(info.caps.map((cap) => ({ id: cap.id, next: cap.next }))).to.deep.equal([
        { id: 3, next: 40 },
        { id: 1, next: 0 },
      ]);
      expect(info.caps[1]).to.deep.include({ nrIovas: 2, ranges: [{ start: 0n, last: IOMMU_MSI_WINDOW.start - 1n }] });
    });
  });

  describe('VFIO_IOMMU_MAP_DMA', () => {
    it('EINVAL for argsz below 32 or flags other than READ|WRITE (VADDR too), then ENODEV without a compat IOAS', async () => {
      const h = await iommufdHarness('vfio-container');
      await expectErrno(mapDma(h, { argsz: 31 }), 'EINVAL', 'argsz 31');
      await expectErrno(mapDma(h, { flags: VFIO_DMA_MAP_FLAG_VADDR }), 'EINVAL');
      await expectErrno(mapDma(h), 'ENODEV');
    });

    it('then EOVERFLOW for vaddr + size, EINVAL for size 0 or off the alignment, EINVAL on reserved IOVAs, EEXIST over a mapping', async () => {
      const h = await container();
      await expectErrno(mapDma(h, { vaddr: U64_MAX, size: 2n }), 'EOVERFLOW');
      await expectErrno(mapDma(h, { size: 0n }), 'EINVAL');
      await expectErrno(mapDma(h, { size: PAGE + 1n }), 'EINVAL');
      await expectErrno(mapDma(h, { iova: IOMMU_MSI_WINDOW.start }), 'EINVAL', 'reserved');
      await mapDma(h, { size: 2n * PAGE });
      await expectErrno(mapDma(h, { iova: IOVA + PAGE }), 'EEXIST');
      expect(h.iommu.mapped()).to.deep.equal(['1:0x100000+0x2000']);
    });

    it('flags 0 is taken (unlike real type1): pinned, mapped for no access', async () => {
      const h = await container();
      await mapDma(h, { flags: 0 });
      expect(h.memory.pins).to.equal(1);
      expect(h.iommu.mapped()).to.deep.equal([]);
      expect(await unmapDma(h)).to.equal(PAGE);
      expect(h.memory.pins).to.equal(0);
    });
  });

  describe('VFIO_IOMMU_UNMAP_DMA', () => {
    it('EINVAL for argsz below 24 or flags other than ALL (GET_DIRTY_BITMAP too), then ENODEV without a compat IOAS', async () => {
      const h = await iommufdHarness('vfio-container');
      await expectErrno(unmapDma(h, { argsz: 23 }), 'EINVAL');
      await expectErrno(unmapDma(h, { flags: VFIO_DMA_UNMAP_FLAG_GET_DIRTY_BITMAP }), 'EINVAL');
      await expectErrno(unmapDma(h), 'ENODEV');
    });

    it('ALL: EINVAL with an iova or size; else unmaps everything', async () => {
      const h = await container();
      await mapDma(h);
      await mapDma(h, { iova: IOVA + MiB });
      await expectErrno(unmapDma(h, { flags: VFIO_DMA_UNMAP_FLAG_ALL }), 'EINVAL');
      expect(await unmapDma(h, { flags: VFIO_DMA_UNMAP_FLAG_ALL, iova: 0n, size: 0n })).to.equal(2n * PAGE);
    });

    it('TYPE1v2: EINVAL for size 0, EOVERFLOW past 2^64, ENOENT for part of a mapping (real type1 says EINVAL), 0 bytes for an empty range', async () => {
      const h = await container();
      await mapDma(h, { size: 2n * PAGE });
      await expectErrno(unmapDma(h, { size: 0n }), 'EINVAL');
      await expectErrno(unmapDma(h, { iova: U64_MAX, size: 2n }), 'EOVERFLOW');
      await expectErrno(unmapDma(h, { size: PAGE }), 'ENOENT', 'partly covers');
      expect(await unmapDma(h, { iova: 64n * MiB })).to.equal(0n);
      expect(await unmapDma(h, { size: 2n * PAGE })).to.equal(2n * PAGE);
    });

    it('TYPE1 (v1): punches a hole in a mapping; a dma-buf’s mapping cannot be cut (EOPNOTSUPP)', async () => {
      const h = await container();
      await h.vfio.iommufd.vfioSetIommu(PID, h.ictx, VFIO_TYPE1_IOMMU);
      await mapDma(h, { size: 4n * PAGE });
      expect(await unmapDma(h, { iova: IOVA + PAGE, size: PAGE })).to.equal(PAGE);
      expect(h.iommu.mapped()).to.deep.equal(['1:0x100000+0x1000', '1:0x102000+0x2000']);
      expect(await unmapDma(h, { iova: IOVA, size: 4n * PAGE })).to.equal(3n * PAGE);
      expect(h.memory.pins).to.equal(0);
      const [, buf] = await h.exportCmb();
      await h.mapFile(buf, { ioasId: 2, length: 4n * PAGE });
      await expectErrno(unmapDma(h, { iova: IOVA + PAGE, size: PAGE }), 'EOPNOTSUPP', 'dma-buf');
      expect(await unmapDma(h, { iova: IOVA, size: 4n * PAGE })).to.equal(4n * PAGE);
    });
  });

  it('destroying the compat IOAS leaves the container without one (ENODEV)', async () => {
    const h = await iommufdHarness('vfio-container');
    await h.vfio.iommufd.vfioIoas(PID, h.ictx, { op: 1, ioasId: h.ioas, reserved: 0 });
    await mapDma(h);
    await h.vfio.iommufd.destroy(PID, h.ictx, h.ioas);
    await expectErrno(mapDma(h), 'ENODEV');
  });
});
