import { expect } from 'chai';
import { Registry } from 'prom-client';
import { registerRevokeMetrics } from './revoke-metrics';
import { EXP_CAP, PM_CAP } from './testing/fake-pci';
import { FN0, FN1, harness, NVME, PID, type Harness } from './testing/harness';
import { PCI_COMMAND } from './uapi/pci-regs';
import {
  VFIO_DEVICE_FEATURE_LOW_POWER_ENTRY,
  VFIO_DEVICE_FEATURE_SET,
  VFIO_PCI_CONFIG_REGION_INDEX as CONFIG,
} from './uapi/vfio';

const le16 = (value: number): Uint8Array => new Uint8Array([value & 0xff, value >>> 8]);

describe('vfio-pci revoke metrics on /metrics', () => {
  let h: Harness;
  let registry: Registry;
  let stop: () => void;

  /** The value a scraper reads for p2p_vfio_dmabuf_revokes_total{bdf, trigger}; 0 when there is none. */
  async function revokes(bdf: string, trigger: string): Promise<number> {
    const line = `p2p_vfio_dmabuf_revokes_total{bdf="${bdf}",trigger="${trigger}"} `;
    const found = (await registry.metrics()).split('\n').find((l) => l.startsWith(line));
    return found === undefined ? 0 : Number(found.slice(line.length));
  }

  /** NVME open by PID with `buffers` dma-bufs exported; returns the device fd. */
  async function openWithBuffers(buffers: number): Promise<number> {
    const fd = await h.open(NVME, PID);
    for (let i = 0; i < buffers; i++) await h.exportBuf(fd);
    return fd;
  }

  beforeEach(() => {
    h = harness();
    registry = new Registry();
    stop = registerRevokeMetrics(registry, h.vfio);
  });

  afterEach(() => stop());

  it('mem-clear: a PCI_COMMAND write clearing MEM counts each buffer it revoked', async () => {
    const fd = await openWithBuffers(2);
    await h.vfio.regionWrite(PID, fd, CONFIG, BigInt(PCI_COMMAND), le16(0));
    expect(await revokes(NVME, 'mem-clear')).to.equal(2);
  });

  it('mem-clear: a second clear revokes nothing more and counts nothing', async () => {
    const fd = await openWithBuffers(1);
    await h.vfio.regionWrite(PID, fd, CONFIG, BigInt(PCI_COMMAND), le16(0));
    await h.vfio.regionWrite(PID, fd, CONFIG, BigInt(PCI_COMMAND), le16(0));
    expect(await revokes(NVME, 'mem-clear')).to.equal(1);
  });

  it('d3hot: a PMCSR write to D3hot', async () => {
    const fd = await openWithBuffers(1);
    await h.vfio.regionWrite(PID, fd, CONFIG, BigInt(PM_CAP + 4), le16(3));
    expect(await revokes(NVME, 'd3hot')).to.equal(1);
  });

  it("flr: DevCtl's BCR_FLR written", async () => {
    const fd = await openWithBuffers(1);
    await h.vfio.regionWrite(PID, fd, CONFIG, BigInt(EXP_CAP + 8), le16(0x8000 | 0x10));
    expect(await revokes(NVME, 'flr')).to.equal(1);
  });

  it('reset: VFIO_DEVICE_RESET', async () => {
    const fd = await openWithBuffers(1);
    await h.vfio.reset(PID, fd);
    expect(await revokes(NVME, 'reset')).to.equal(1);
  });

  it('hot-reset: VFIO_DEVICE_PCI_HOT_RESET counts the buffers of each device of the set', async () => {
    const fd0 = await h.open(FN0);
    await h.vfio.bind(FN1);
    await h.exportBuf(fd0, 0);
    await h.vfio.hotReset(PID, fd0, []);
    expect(await revokes(FN0, 'hot-reset')).to.equal(1);
    expect(await revokes(FN1, 'hot-reset')).to.equal(0);
  });

  it('low-power: VFIO_DEVICE_FEATURE_LOW_POWER_ENTRY', async () => {
    const fd = await openWithBuffers(1);
    await h.vfio.deviceFeature(PID, fd, { flags: VFIO_DEVICE_FEATURE_LOW_POWER_ENTRY | VFIO_DEVICE_FEATURE_SET });
    expect(await revokes(NVME, 'low-power')).to.equal(1);
  });

  it('close: the last close revokes for good, the buffers already revoked included', async () => {
    const fd = await openWithBuffers(2);
    await h.vfio.regionWrite(PID, fd, CONFIG, BigInt(PCI_COMMAND), le16(0));
    await h.registry.closeFd(PID, fd);
    expect(await revokes(NVME, 'mem-clear')).to.equal(2);
    expect(await revokes(NVME, 'close')).to.equal(2);
  });

  it('remove: a surprise unplug revokes for good', async () => {
    await openWithBuffers(1);
    h.pci.unplug(NVME);
    await h.vfio.unplugged(NVME);
    expect(await revokes(NVME, 'remove')).to.equal(1);
  });

  it('a device without dma-bufs adds no sample', async () => {
    const fd = await h.open(NVME, PID);
    await h.vfio.reset(PID, fd);
    expect(await registry.metrics()).to.not.include('p2p_vfio_dmabuf_revokes_total{');
  });
});
