import { expect } from 'chai';
import { expectErrno, harness, MiB, NVME, PAGE, PID, type Harness } from './testing/harness';
import { O_RDWR } from './uapi/fcntl';
import { VFIO_DEVICE_FEATURE_DMA_BUF, VFIO_DEVICE_FEATURE_GET, VFIO_PCI_CONFIG_REGION_INDEX as CONFIG } from './uapi/vfio';
import { encodeDmaBufFeature } from './dma-buf/dma-buf-feature';
import type { VfioPciVariants } from './variants';

const GET = VFIO_DEVICE_FEATURE_DMA_BUF | VFIO_DEVICE_FEATURE_GET;

async function setup(variants: Partial<VfioPciVariants>): Promise<Harness & { fd: number }> {
  const h = harness({ variants });
  return { ...h, fd: await h.open() };
}

describe('variants', () => {
  describe("dmaBufLayout 'single' (the first revisions' one-range struct)", () => {
    it('offset and length 0 export the whole BAR; else the one range', async () => {
      const h = await setup({ dmaBufLayout: 'single' });
      await h.exportBuf(h.fd, 2, []);
      await h.exportBuf(h.fd, 2, [{ offset: MiB, length: PAGE }]);
      expect(h.vfio.buffers().map((b) => b.ranges)).to.deep.equal([[{ offset: 0n, length: 4n * MiB }], [{ offset: MiB, length: PAGE }]]);
    });

    it('the same checks in the same order, with its own 24-byte minimum', async () => {
      const h = await setup({ dmaBufLayout: 'single' });
      const feature = (regionIndex: number, offset: bigint, length: bigint) => ({ regionIndex, openFlags: O_RDWR, ranges: [{ offset, length }] });
      const call = (f: ReturnType<typeof feature>, argsz?: number) =>
        h.vfio.deviceFeature(PID, h.fd, { flags: GET, ...(argsz === undefined ? {} : { argsz }), payload: { kind: 'dma-buf', feature: f } });
      await expectErrno(call(feature(2, 0n, PAGE), 8 + 23), 'EINVAL', '24-byte');
      await expectErrno(call(feature(7, 0x800n, 0n)), 'ENODEV');
      await expectErrno(call(feature(2, 0x800n, PAGE)), 'EINVAL', 'page aligned');
      await expectErrno(call(feature(3, 0n, 0n)), 'EINVAL', 'empty');
      await expectErrno(call(feature(4, 0n, PAGE)), 'EINVAL', 'port I/O');
      await expectErrno(call(feature(2, 4n * MiB, PAGE)), 'EINVAL', 'ends past');
      const raw = { kind: 'raw' as const, data: encodeDmaBufFeature(feature(2, 0n, PAGE), 'single').subarray(0, 16) };
      await expectErrno(h.vfio.deviceFeature(PID, h.fd, { flags: GET, argsz: 8 + 24, payload: raw }), 'EFAULT');
      await expectErrno(h.vfio.deviceFeature(PID, h.fd, { flags: GET, payload: { kind: 'dma-buf', feature: { regionIndex: 2, openFlags: 0, ranges: [{ offset: 0n, length: PAGE }, { offset: PAGE, length: PAGE }] } } }), 'EINVAL', 'one range');
    });

    it('is chosen per device at bind, over the service default', async () => {
      const h = harness({ variants: { dmaBufLayout: 'single' } });
      const fd = await h.open(NVME, PID, { dmaBufLayout: 'ranges' });
      await h.exportBuf(fd, 2, [{ offset: 0n, length: PAGE }, { offset: MiB, length: PAGE }]);
      expect(h.vfio.devices()[0]!.variants).to.deep.include({ dmaBufLayout: 'ranges' });
      expect(h.vfio.buffers()[0]!.size).to.equal(2n * PAGE);
    });
  });

  describe('allowPin (the seed patch 4)', () => {
    it('exports pinnable buffers; pins count; a revoked buffer cannot be pinned', async () => {
      const h = await setup({ allowPin: true });
      const buf = await h.exportBuf(h.fd);
      expect(h.registry.bufferAt(PID, buf).request.allowPin).to.equal(true);
      const handle = h.vfio.buffers()[0]!.handle;
      h.vfio.pin(handle);
      h.vfio.pin(handle);
      h.vfio.unpin(handle);
      expect(h.vfio.buffers()[0]!.pins).to.equal(1);
      h.vfio.unpin(handle);
      await h.vfio.regionWrite(PID, h.fd, CONFIG, 4n, new Uint8Array([0, 0]));
      await expectErrno(async () => h.vfio.pin(handle), 'ENODEV');
    });

    it('VFIO_DEVICE_RESET fails with EINVAL while a buffer is pinned, changing nothing', async () => {
      const h = await setup({ allowPin: true });
      await h.exportBuf(h.fd);
      const handle = h.vfio.buffers()[0]!.handle;
      h.vfio.pin(handle);
      const mark = h.log.length;
      await expectErrno(h.vfio.reset(PID, h.fd), 'EINVAL', 'pinned');
      expect(h.since(mark)).to.deep.equal([]);
      h.vfio.unpin(handle);
      await h.vfio.reset(PID, h.fd);
      expect(h.since(mark)).to.include(`flr ${NVME}`);
    });
  });

  describe('cpuMmap', () => {
    it('exports with CPU access; cpuMap gives the map extents, ENODEV while revoked', async () => {
      const h = await setup({ cpuMmap: true });
      const buf = await h.exportBuf(h.fd);
      expect(h.registry.bufferAt(PID, buf).request.cpuAccess).to.equal(true);
      const handle = h.vfio.buffers()[0]!.handle;
      expect(await h.vfio.cpuMap(handle)).to.deep.equal(await h.vfio.map(handle));
      await h.vfio.regionWrite(PID, h.fd, CONFIG, 4n, new Uint8Array([0, 0]));
      await expectErrno(h.vfio.cpuMap(handle), 'ENODEV');
    });
  });
});
