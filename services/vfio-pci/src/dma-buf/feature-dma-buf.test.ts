import { expect } from 'chai';
import { O_CLOEXEC, O_NONBLOCK, O_RDWR } from '../uapi/fcntl';
import { PCI_COMMAND } from '../uapi/pci-regs';
import {
  VFIO_DEVICE_FEATURE_DMA_BUF,
  VFIO_DEVICE_FEATURE_GET,
  VFIO_DEVICE_FEATURE_PROBE,
  VFIO_DEVICE_FEATURE_SET,
  VFIO_PCI_CONFIG_REGION_INDEX,
} from '../uapi/vfio';
import { NO_FD, type DeviceFeatureRequest } from '../vfio-pci';
import { DOORBELL_WINDOW, DOORBELLS, expectErrno, harness, HIGH, HIGH_BAR, MiB, NVME, PAGE, PID, WITH_DOORBELLS, type Harness } from '../testing/harness';
import { encodeDmaBufFeature, KMALLOC_MAX_SIZE, type DmaBufFeature } from './dma-buf-feature';

const GET = VFIO_DEVICE_FEATURE_DMA_BUF | VFIO_DEVICE_FEATURE_GET;
const OK: DmaBufFeature = { regionIndex: 2, openFlags: O_RDWR, ranges: [{ offset: 0n, length: PAGE }] };

function request(feature: Partial<DmaBufFeature> = {}, flags = GET, argsz?: number): DeviceFeatureRequest {
  return { flags, ...(argsz === undefined ? {} : { argsz }), payload: { kind: 'dma-buf', feature: { ...OK, ...feature } } };
}

async function setup(bdf = NVME, variants = {}): Promise<Harness & { fd: number }> {
  const h = harness();
  return { ...h, fd: await h.open(bdf, PID, variants) };
}

describe('VFIO_DEVICE_FEATURE_DMA_BUF: the checks, errno by errno and in order', () => {
  describe('(1) vfio_ioctl_device_feature()', () => {
    it('EINVAL for argsz below the 8-byte header', async () => {
      const h = await setup();
      await expectErrno(h.vfio.deviceFeature(PID, h.fd, { flags: GET, argsz: 7 }), 'EINVAL', 'argsz 7');
      await expectErrno(h.vfio.deviceFeature(PID, h.fd, { flags: GET, argsz: 0 }), 'EINVAL', 'argsz 0');
    });

    it('EINVAL for unknown flag bits', async () => {
      const h = await setup();
      await expectErrno(h.vfio.deviceFeature(PID, h.fd, request({}, GET | (1 << 19))), 'EINVAL', 'unknown bits');
    });

    it('EINVAL for GET and SET together without PROBE', async () => {
      const h = await setup();
      await expectErrno(h.vfio.deviceFeature(PID, h.fd, request({}, GET | VFIO_DEVICE_FEATURE_SET)), 'EINVAL', 'mutually exclusive');
    });

    it('comes before (2): a driver that cannot export still gets EINVAL for a short argsz', async () => {
      const h = await setup(NVME, { dmaBufExport: false });
      await expectErrno(h.vfio.deviceFeature(PID, h.fd, { flags: GET, argsz: 4 }), 'EINVAL');
    });
  });

  describe('(2) a driver without get_dmabuf_phys', () => {
    it('EOPNOTSUPP for GET, for PROBE and even for SET', async () => {
      const h = await setup(NVME, { dmaBufExport: false });
      await expectErrno(h.vfio.deviceFeature(PID, h.fd, request()), 'EOPNOTSUPP');
      await expectErrno(h.vfio.deviceFeature(PID, h.fd, request({}, GET | VFIO_DEVICE_FEATURE_PROBE)), 'EOPNOTSUPP');
      await expectErrno(h.vfio.deviceFeature(PID, h.fd, request({}, VFIO_DEVICE_FEATURE_DMA_BUF | VFIO_DEVICE_FEATURE_SET)), 'EOPNOTSUPP');
    });
  });

  describe('(3) vfio_check_feature()', () => {
    it('EINVAL for SET, also with PROBE', async () => {
      const h = await setup();
      await expectErrno(h.vfio.deviceFeature(PID, h.fd, request({}, VFIO_DEVICE_FEATURE_DMA_BUF | VFIO_DEVICE_FEATURE_SET)), 'EINVAL', 'SET');
      const probeBoth = GET | VFIO_DEVICE_FEATURE_SET | VFIO_DEVICE_FEATURE_PROBE;
      await expectErrno(h.vfio.deviceFeature(PID, h.fd, request({}, probeBoth)), 'EINVAL', 'SET');
    });

    it('PROBE|GET succeeds without an fd or an export, whatever the argument says', async () => {
      const h = await setup();
      const probe = GET | VFIO_DEVICE_FEATURE_PROBE;
      expect(await h.vfio.deviceFeature(PID, h.fd, request({ ranges: [], regionIndex: 9 }, probe))).to.deep.equal({ fd: NO_FD });
      expect(await h.vfio.deviceFeature(PID, h.fd, { flags: VFIO_DEVICE_FEATURE_DMA_BUF | VFIO_DEVICE_FEATURE_PROBE })).to.deep.equal({ fd: NO_FD });
      expect(h.registry.buffers.size).to.equal(0);
    });

    it('EINVAL without GET (and without PROBE)', async () => {
      const h = await setup();
      await expectErrno(h.vfio.deviceFeature(PID, h.fd, request({}, VFIO_DEVICE_FEATURE_DMA_BUF)), 'EINVAL', 'one of GET or SET');
    });

    it('EINVAL when argsz leaves less than the 16-byte struct', async () => {
      const h = await setup();
      await expectErrno(h.vfio.deviceFeature(PID, h.fd, request({}, GET, 8 + 15)), 'EINVAL', '16-byte');
    });

    it('comes before (4): a short argsz with nr_ranges 0 is the argsz EINVAL', async () => {
      const h = await setup();
      await expectErrno(h.vfio.deviceFeature(PID, h.fd, request({ ranges: [] }, GET, 8 + 12)), 'EINVAL', '16-byte');
    });

    it('EFAULT when the struct itself is not in the caller buffer', async () => {
      const h = await setup();
      const raw = { flags: GET, argsz: 8 + 32, payload: { kind: 'raw' as const, data: new Uint8Array(8) } };
      await expectErrno(h.vfio.deviceFeature(PID, h.fd, raw), 'EFAULT', 'struct vfio_device_feature_dma_buf');
    });
  });

  describe('(4) nr_ranges and flags', () => {
    it('EINVAL for nr_ranges 0 or flags other than 0', async () => {
      const h = await setup();
      await expectErrno(h.vfio.deviceFeature(PID, h.fd, request({ ranges: [] })), 'EINVAL', 'nr_ranges is 0');
      await expectErrno(h.vfio.deviceFeature(PID, h.fd, request({ flags: 1 })), 'EINVAL', 'flags 1');
    });

    it('comes before (5): nr_ranges 0 on the config region is EINVAL, not ENODEV', async () => {
      const h = await setup();
      await expectErrno(h.vfio.deviceFeature(PID, h.fd, request({ ranges: [], regionIndex: VFIO_PCI_CONFIG_REGION_INDEX })), 'EINVAL');
    });
  });

  describe('(5) region_index', () => {
    it('ENODEV for the ROM, config, VGA and beyond', async () => {
      const h = await setup();
      for (const regionIndex of [6, 7, 8, 9, 0xffff_ffff]) {
        await expectErrno(h.vfio.deviceFeature(PID, h.fd, request({ regionIndex })), 'ENODEV', 'not a BAR');
      }
    });

    it('comes before (6): ENODEV although the ranges are not in the buffer', async () => {
      const h = await setup();
      await expectErrno(h.vfio.deviceFeature(PID, h.fd, request({ regionIndex: 6, nrRanges: 4 })), 'ENODEV');
    });
  });

  describe('(6) copying the ranges', () => {
    it('EFAULT when argsz cannot hold nr_ranges ranges', async () => {
      const h = await setup();
      const ranges = [{ offset: 0n, length: PAGE }, { offset: PAGE, length: PAGE }];
      await expectErrno(h.vfio.deviceFeature(PID, h.fd, request({ ranges }, GET, 8 + 16 + 16)), 'EFAULT', '2 struct vfio_region_dma_range');
      await expectErrno(h.vfio.deviceFeature(PID, h.fd, request({ nrRanges: 2 })), 'EFAULT');
    });

    it('ENOMEM for more ranges than kmalloc can hold, before the copy could fault', async () => {
      const h = await setup();
      await expectErrno(h.vfio.deviceFeature(PID, h.fd, request({ nrRanges: KMALLOC_MAX_SIZE / 16 + 1 })), 'ENOMEM');
      await expectErrno(h.vfio.deviceFeature(PID, h.fd, request({ nrRanges: 0xffff_ffff })), 'ENOMEM');
    });

    it('comes before (7): a bad first range with the second missing is EFAULT', async () => {
      const h = await setup();
      await expectErrno(h.vfio.deviceFeature(PID, h.fd, request({ ranges: [{ offset: 1n, length: 0n }], nrRanges: 2 })), 'EFAULT');
    });
  });

  describe('(7) validate_dmabuf_input()', () => {
    it('EINVAL for an empty range, an unaligned offset or an unaligned length', async () => {
      const h = await setup();
      for (const range of [
        { offset: 0n, length: 0n },
        { offset: 0x800n, length: PAGE },
        { offset: 0n, length: 0x1800n },
      ]) {
        await expectErrno(h.vfio.deviceFeature(PID, h.fd, request({ ranges: [range] })), 'EINVAL', 'empty or not page aligned');
      }
    });

    it('EINVAL when the lengths overflow 64 bits, or the size reaches DMA_IOVA_USE_SWIOTLB', async () => {
      const h = await setup();
      const half = { offset: 0n, length: 1n << 63n };
      await expectErrno(h.vfio.deviceFeature(PID, h.fd, request({ ranges: [half, half] })), 'EINVAL', 'overflow 64 bits');
      await expectErrno(h.vfio.deviceFeature(PID, h.fd, request({ ranges: [half] })), 'EINVAL', 'DMA_IOVA_USE_SWIOTLB');
    });

    it('comes before (8): an unaligned range of the I/O BAR is the alignment EINVAL', async () => {
      const h = await setup();
      await expectErrno(h.vfio.deviceFeature(PID, h.fd, request({ regionIndex: 4, ranges: [{ offset: 0n, length: 0x100n }] })), 'EINVAL', 'page aligned');
    });
  });

  describe('(8) the BAR must be memory space', () => {
    it('EINVAL for an I/O BAR and for an absent BAR (or the upper half of a 64-bit one)', async () => {
      const h = await setup();
      await expectErrno(h.vfio.deviceFeature(PID, h.fd, request({ regionIndex: 4 })), 'EINVAL', 'port I/O');
      await expectErrno(h.vfio.deviceFeature(PID, h.fd, request({ regionIndex: 3 })), 'EINVAL', 'not implemented');
      await expectErrno(h.vfio.deviceFeature(PID, h.fd, request({ regionIndex: 5 })), 'EINVAL', 'not implemented');
    });

    it('takes a register BAR: it is memory space, as for pcim_p2pdma_provider()', async () => {
      const h = await setup();
      expect(await h.exportBuf(h.fd, 0, [{ offset: 0n, length: 0x4000n }])).to.be.greaterThan(2);
    });

    it('comes before (9): an overflowing range of the I/O BAR is EINVAL', async () => {
      const h = await setup();
      await expectErrno(h.vfio.deviceFeature(PID, h.fd, request({ regionIndex: 4, ranges: [{ offset: 0xffff_ffff_ffff_f000n, length: PAGE }] })), 'EINVAL', 'port I/O');
    });
  });

  describe('(9) each range inside the BAR', () => {
    it('EOVERFLOW when start + offset, or start + offset + length, overflows 64 bits', async () => {
      const h = await setup(HIGH);
      const offset = (1n << 64n) - HIGH_BAR;
      await expectErrno(h.vfio.deviceFeature(PID, h.fd, request({ regionIndex: 0, ranges: [{ offset, length: PAGE }] })), 'EOVERFLOW');
      await expectErrno(h.vfio.deviceFeature(PID, h.fd, request({ regionIndex: 0, ranges: [{ offset: 0n, length: 1n << 62n }] })), 'EOVERFLOW');
    });

    it('EINVAL for a range ending past the BAR', async () => {
      const h = await setup();
      await expectErrno(h.vfio.deviceFeature(PID, h.fd, request({ ranges: [{ offset: 4n * MiB - PAGE, length: 2n * PAGE }] })), 'EINVAL', 'ends past');
      await expectErrno(h.vfio.deviceFeature(PID, h.fd, request({ ranges: [{ offset: 4n * MiB, length: PAGE }] })), 'EINVAL', 'ends past');
    });

    it('checks range by range, in order', async () => {
      const h = await setup(HIGH);
      const past = { offset: MiB, length: PAGE };
      const overflowing = { offset: 0n, length: 1n << 62n };
      await expectErrno(h.vfio.deviceFeature(PID, h.fd, request({ regionIndex: 0, ranges: [past, overflowing] })), 'EINVAL', 'range 0');
      await expectErrno(h.vfio.deviceFeature(PID, h.fd, request({ regionIndex: 0, ranges: [overflowing, past] })), 'EOVERFLOW', 'range 0');
    });
  });

  describe('(9) a register BAR with a memory window exports the window only', () => {
    const windowed = async (): Promise<Harness & { fd: number }> => {
      const h = harness({ functions: WITH_DOORBELLS });
      return { ...h, fd: await h.open(DOORBELLS) };
    };

    it('takes ranges inside the window', async () => {
      const h = await windowed();
      expect(await h.exportBuf(h.fd, 0, [{ offset: DOORBELL_WINDOW.offset, length: DOORBELL_WINDOW.length }])).to.be.greaterThan(2);
      expect(await h.exportBuf(h.fd, 0, [{ offset: DOORBELL_WINDOW.offset + PAGE, length: PAGE }, { offset: DOORBELL_WINDOW.offset, length: PAGE }])).to.be.greaterThan(2);
    });

    it('EINVAL for a range before it, after it, or across its edge, as for a range past the BAR', async () => {
      const h = await windowed();
      for (const range of [
        { offset: 0n, length: PAGE },
        { offset: DOORBELL_WINDOW.offset + DOORBELL_WINDOW.length, length: PAGE },
        { offset: DOORBELL_WINDOW.offset + PAGE, length: 2n * PAGE },
      ]) {
        await expectErrno(h.vfio.deviceFeature(PID, h.fd, request({ regionIndex: 0, ranges: [range] })), 'EINVAL', 'leaves the memory window');
      }
      expect(h.registry.buffers.size).to.equal(0);
    });

    it('checks range by range, in order, with the BAR checks of each range first', async () => {
      const h = await windowed();
      const outside = { offset: 0n, length: PAGE };
      const overflowing = { offset: 0n, length: 1n << 62n };
      await expectErrno(h.vfio.deviceFeature(PID, h.fd, request({ regionIndex: 0, ranges: [outside, overflowing] })), 'EINVAL', 'range 0');
      await expectErrno(h.vfio.deviceFeature(PID, h.fd, request({ regionIndex: 0, ranges: [{ offset: DOORBELL_WINDOW.offset, length: PAGE }, overflowing] })), 'EINVAL', 'range 1');
    });
  });

  describe('(10) the registration', () => {
    it('ENODEV once the function went away, after every earlier check', async () => {
      const h = await setup(HIGH);
      h.pci.unplug(HIGH);
      await h.vfio.unplugged(HIGH);
      await expectErrno(h.vfio.deviceFeature(PID, h.fd, request({ regionIndex: 0, ranges: [{ offset: 0n, length: 1n << 62n }] })), 'EOVERFLOW');
      await expectErrno(h.vfio.deviceFeature(PID, h.fd, request({ regionIndex: 0 })), 'ENODEV', 'going away');
      expect(h.registry.buffers.size).to.equal(0);
    });
  });

  describe('(11) the export', () => {
    it('returns an fd in the caller table for a buffer of the ranges laid end to end', async () => {
      const h = await setup();
      const ranges = [
        { offset: 2n * MiB, length: 3n * PAGE },
        { offset: 0n, length: PAGE },
      ];
      const fd = await h.exportBuf(h.fd, 2, ranges);
      const buffer = h.registry.bufferAt(PID, fd);
      expect(buffer.request).to.deep.include({ pid: PID, size: 4n * PAGE, revoked: false, providerBdf: NVME, requirePeer2peer: true, allowPin: false, cpuAccess: false });
      const [listing] = h.vfio.buffers();
      expect(listing).to.deep.include({ bufferId: buffer.bufferId, regionIndex: 2, size: 4n * PAGE, revoked: false, forgotten: false, ranges });
      expect(h.vfio.devices().find((d) => d.bdf === NVME)!.dmaBufs).to.equal(1);
    });

    it('starts revoked when exported while memory decode is off (PCI_COMMAND.MEM clear)', async () => {
      const h = await setup();
      await h.vfio.regionWrite(PID, h.fd, VFIO_PCI_CONFIG_REGION_INDEX, BigInt(PCI_COMMAND), new Uint8Array([0, 0]));
      const fd = await h.exportBuf(h.fd);
      expect(fd).to.be.greaterThan(2);
      expect(h.registry.bufferAt(PID, fd).request.revoked).to.equal(true);
      expect(h.vfio.buffers()[0]!.revoked).to.equal(true);
      await expectErrno(async () => h.vfio.attach(h.vfio.buffers()[0]!.handle, true), 'ENODEV');
    });

    it('keeps only the access mode and O_NONBLOCK of open_flags', async () => {
      const h = await setup();
      const O_DIRECT = 0o40000;
      await h.vfio.deviceFeature(PID, h.fd, request({ openFlags: O_RDWR | O_CLOEXEC | O_NONBLOCK | O_DIRECT }));
      expect([...h.registry.buffers.values()][0]!.request.openFlags).to.equal(O_RDWR | O_NONBLOCK);
    });

    it('leaves nothing behind when the registry refuses the export', async () => {
      const h = await setup();
      await expectErrno(h.vfio.deviceFeature(PID, h.fd, request({ openFlags: 3 })), 'EINVAL', 'access mode 3');
      expect(h.vfio.buffers()).to.deep.equal([]);
      expect(h.vfio.devices().find((d) => d.bdf === NVME)!.dmaBufs).to.equal(0);
    });

    it('encodes the typed argument exactly as struct vfio_device_feature_dma_buf', () => {
      const bytes = encodeDmaBufFeature({ regionIndex: 2, openFlags: O_RDWR, ranges: [{ offset: 0x1000n, length: 0x2000n }] }, 'ranges');
      expect(Buffer.from(bytes).toString('hex')).to.equal(
        '02000000' + '02000000' + '00000000' + '01000000' + '0010000000000000' + '0020000000000000',
      );
    });
  });

  describe('other features', () => {
    it('ENOTTY for features vfio-pci does not have, after the header checks', async () => {
      const h = await setup();
      for (const feature of [0, 1, 2, 6, 7, 8, 9, 10, 12, 0xffff]) {
        await expectErrno(h.vfio.deviceFeature(PID, h.fd, { flags: feature | VFIO_DEVICE_FEATURE_GET }), 'ENOTTY');
      }
      await expectErrno(h.vfio.deviceFeature(PID, h.fd, { flags: 12 | VFIO_DEVICE_FEATURE_GET, argsz: 4 }), 'EINVAL');
    });
  });
});
