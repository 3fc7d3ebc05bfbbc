import { expect } from 'chai';
import { DEFAULT_FUNCTIONS, DOORBELL_WINDOW, DOORBELLS, expectErrno, harness, MiB, NVME, PID, WITH_DOORBELLS, type Harness } from '../testing/harness';
import { BULK_CHUNK_BYTES } from './bar-rw';
import {
  VFIO_PCI_CONFIG_REGION_INDEX as CONFIG,
  VFIO_PCI_ROM_REGION_INDEX as ROM,
  VFIO_REGION_INFO_FLAG_CAPS as CAPS,
  VFIO_REGION_INFO_FLAG_MMAP as MMAP,
  VFIO_REGION_INFO_FLAG_READ as READ,
  VFIO_REGION_INFO_FLAG_WRITE as WRITE,
} from '../uapi/vfio';

const SMALL = '0000:0b:00.0';
const functions = [
  ...DEFAULT_FUNCTIONS,
  { bdf: SMALL, bars: [{ index: 0, size: 0x800n, is64Bit: false, prefetchable: false, kind: 'memory' as const, busAddress: 0xe000_0000n }] },
];

async function setup(bdf = NVME): Promise<Harness & { fd: number }> {
  const h = harness({ functions });
  return { ...h, fd: await h.open(bdf) };
}

const dword = (bytes: Uint8Array): number => Buffer.from(bytes).readUInt32LE(0);
const le32 = (value: number): Uint8Array => {
  const out = Buffer.alloc(4);
  out.writeUInt32LE(value >>> 0);
  return new Uint8Array(out);
};

describe('device and region info, region access', () => {
  it('VFIO_DEVICE_GET_INFO: PCI | RESET, 9 regions, 5 IRQ indices', async () => {
    const h = await setup();
    expect(await h.vfio.deviceInfo(PID, h.fd)).to.deep.equal({ flags: 3, numRegions: 9, numIrqs: 5 });
  });

  it('VFIO_DEVICE_GET_REGION_INFO for BARs, ROM and config, at index << 40', async () => {
    const h = await setup();
    const info = async (index: number) => h.vfio.regionInfo(PID, h.fd, index);
    expect(await info(0)).to.deep.equal({ index: 0, offset: 0n, size: 0x4000n, flags: READ | WRITE | MMAP, sparseMmapAreas: [] });
    expect(await info(1)).to.deep.include({ offset: 1n << 40n, size: 0n, flags: 0 });
    expect(await info(2)).to.deep.include({ offset: 2n << 40n, size: 4n * MiB, flags: READ | WRITE | MMAP });
    expect(await info(3)).to.deep.include({ size: 0n, flags: 0 });
    expect(await info(4)).to.deep.include({ size: 0x100n, flags: READ | WRITE });
    expect(await info(5)).to.deep.include({ size: 0n, flags: 0 });
    expect(await info(ROM)).to.deep.include({ offset: 6n << 40n, size: 0x1_0000n, flags: READ });
    expect(await info(CONFIG)).to.deep.include({ offset: 7n << 40n, size: 0x1000n, flags: READ | WRITE });
    await expectErrno(info(8), 'EINVAL', 'VGA');
    await expectErrno(info(9), 'EINVAL');
    await expectErrno(info(-1), 'EINVAL');
  });

  it('a register BAR with a memory window: MMAP | CAPS, the window its one sparse-mmap area', async () => {
    const h = harness({ functions: WITH_DOORBELLS });
    const fd = await h.open(DOORBELLS);
    expect(await h.vfio.regionInfo(PID, fd, 0)).to.deep.equal({
      index: 0,
      offset: 0n,
      size: 0x4000n,
      flags: READ | WRITE | MMAP | CAPS,
      sparseMmapAreas: [{ offset: DOORBELL_WINDOW.offset, size: DOORBELL_WINDOW.length }],
    });
  });

  it('no MMAP for a memory BAR smaller than a page; no ROM region without a ROM', async () => {
    const h = await setup(SMALL);
    expect(await h.vfio.regionInfo(PID, h.fd, 0)).to.deep.include({ size: 0x800n, flags: READ | WRITE });
    expect(await h.vfio.regionInfo(PID, h.fd, ROM)).to.deep.include({ size: 0n, flags: 0 });
  });

  describe('config space', () => {
    it('BARs are virtual: sizing works and never reaches the hardware', async () => {
      const h = await setup();
      expect(dword(await h.vfio.regionRead(PID, h.fd, CONFIG, 0x18n, 4))).to.equal(0x0000_000c);
      expect(dword(await h.vfio.regionRead(PID, h.fd, CONFIG, 0x1cn, 4))).to.equal(0x38);
      const mark = h.log.length;
      await h.vfio.regionWrite(PID, h.fd, CONFIG, 0x18n, le32(0xffff_ffff));
      await h.vfio.regionWrite(PID, h.fd, CONFIG, 0x1cn, le32(0xffff_ffff));
      await h.vfio.regionWrite(PID, h.fd, CONFIG, 0x30n, le32(0xffff_ffff));
      expect(h.since(mark)).to.deep.equal([]);
      expect(dword(await h.vfio.regionRead(PID, h.fd, CONFIG, 0x18n, 4))).to.equal(0xffc0_000c);
      expect(dword(await h.vfio.regionRead(PID, h.fd, CONFIG, 0x1cn, 4))).to.equal(0xffff_ffff);
      expect(dword(await h.vfio.regionRead(PID, h.fd, CONFIG, 0x10n, 4))).to.equal(0xfebf_0004);
      expect(dword(await h.vfio.regionRead(PID, h.fd, CONFIG, 0x20n, 4))).to.equal(0x0000_e001);
      expect(dword(await h.vfio.regionRead(PID, h.fd, CONFIG, 0x24n, 4))).to.equal(0);
      expect(dword(await h.vfio.regionRead(PID, h.fd, CONFIG, 0x30n, 4))).to.equal(0xffff_0001);
    });

    it('reads in aligned chunks; EFAULT outside the 4 KiB; nothing for 0 bytes', async () => {
      const h = await setup();
      expect([...(await h.vfio.regionRead(PID, h.fd, CONFIG, 0x3n, 3))]).to.deep.equal([0x00, 0x03, 0x00]);
      expect(await h.vfio.regionRead(PID, h.fd, CONFIG, 0x1000n, 0)).to.have.length(0);
      await expectErrno(h.vfio.regionRead(PID, h.fd, CONFIG, 0xfffn, 2), 'EFAULT');
      await expectErrno(h.vfio.regionRead(PID, h.fd, CONFIG, 0x1000n, 1), 'EFAULT');
      await expectErrno(h.vfio.regionWrite(PID, h.fd, CONFIG, 0x1000n, new Uint8Array(1)), 'EFAULT');
    });

    it('other writes reach the hardware as written', async () => {
      const h = await setup();
      const mark = h.log.length;
      await h.vfio.regionWrite(PID, h.fd, CONFIG, 0x3cn, new Uint8Array([0x0b]));
      expect(h.since(mark)).to.deep.equal([`config-write ${NVME} 0x3c/1 0xb`]);
    });
  });

  describe('BARs and ROM', () => {
    it('memory BAR: bulk access, cut at the end of the BAR; EINVAL past it', async () => {
      const h = await setup();
      const end = 4n * MiB;
      expect(await h.vfio.regionWrite(PID, h.fd, 2, end - 2n, new Uint8Array([1, 2, 3, 4]))).to.equal(2);
      expect([...(await h.vfio.regionRead(PID, h.fd, 2, end - 4n, 8))]).to.deep.equal([0, 0, 1, 2]);
      await expectErrno(h.vfio.regionRead(PID, h.fd, 2, end, 1), 'EINVAL', 'past');
      await expectErrno(h.vfio.regionRead(PID, h.fd, 3, 0n, 1), 'EINVAL', 'no BAR 3');
    });

    it('memory BAR: an access larger than one BulkWrite goes to pci-emu in pieces and arrives whole', async () => {
      const h = await setup();
      const data = Buffer.alloc(2 * BULK_CHUNK_BYTES + 16, 0x7e);
      const mark = h.log.length;
      expect(await h.vfio.regionWrite(PID, h.fd, 2, 0x10n, data)).to.equal(data.length);
      expect(h.since(mark)).to.deep.equal([
        `bulk-write ${NVME} bar2 0x10+${BULK_CHUNK_BYTES}`,
        `bulk-write ${NVME} bar2 0x${(0x10 + BULK_CHUNK_BYTES).toString(16)}+${BULK_CHUNK_BYTES}`,
        `bulk-write ${NVME} bar2 0x${(0x10 + 2 * BULK_CHUNK_BYTES).toString(16)}+16`,
      ]);
      expect(Buffer.from(await h.vfio.regionRead(PID, h.fd, 2, 0x10n, data.length)).equals(data)).to.equal(true);
    });

    it('memory space needs decode (EIO); port I/O does not', async () => {
      const h = await setup();
      await h.vfio.regionWrite(PID, h.fd, CONFIG, 4n, new Uint8Array([0x01, 0]));
      await expectErrno(h.vfio.regionRead(PID, h.fd, 2, 0n, 4), 'EIO');
      await expectErrno(h.vfio.regionWrite(PID, h.fd, 0, 0n, new Uint8Array(4)), 'EIO');
      await expectErrno(h.vfio.regionRead(PID, h.fd, ROM, 0n, 4), 'EIO');
      await h.vfio.regionWrite(PID, h.fd, 4, 0n, new Uint8Array([7, 8]));
      expect([...(await h.vfio.regionRead(PID, h.fd, 4, 0n, 2))]).to.deep.equal([7, 8]);
    });

    it('register BAR: the widest aligned MMIO accesses (8, then 4, 2, 1)', async () => {
      const h = await setup();
      const mark = h.log.length;
      await h.vfio.regionWrite(PID, h.fd, 0, 0n, new Uint8Array([1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11]));
      expect(h.since(mark)).to.deep.equal([
        `mmio-write ${NVME} bar0 0x0/8`,
        `mmio-write ${NVME} bar0 0x8/2`,
        `mmio-write ${NVME} bar0 0xa/1`,
      ]);
      expect([...(await h.vfio.regionRead(PID, h.fd, 0, 1n, 10))]).to.deep.equal([2, 3, 4, 5, 6, 7, 8, 9, 10, 11]);
    });

    it('ROM: read with the ROM BAR enabled for the access only; never written', async () => {
      const h = await setup();
      const mark = h.log.length;
      expect([...(await h.vfio.regionRead(PID, h.fd, ROM, 0n, 4))]).to.deep.equal([0, 0, 0, 0]);
      expect(h.since(mark)).to.deep.equal([`config-write ${NVME} 0x30/4 0xfeb00001`, `config-write ${NVME} 0x30/4 0xfeb00000`]);
      await expectErrno(h.vfio.regionWrite(PID, h.fd, ROM, 0n, new Uint8Array(1)), 'EINVAL', 'read-only');
    });

    it('EINVAL for the VGA region and past the regions', async () => {
      const h = await setup();
      await expectErrno(h.vfio.regionRead(PID, h.fd, 8, 0n, 1), 'EINVAL', 'VGA');
      await expectErrno(h.vfio.regionWrite(PID, h.fd, 9, 0n, new Uint8Array(1)), 'EINVAL');
    });
  });
});
