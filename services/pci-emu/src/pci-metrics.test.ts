import { expect } from 'chai';
import { Registry } from 'prom-client';
import { useTempShmDir } from '@p2p/testing';
import { PCI_COMMAND } from './config-space/pci-regs';
import { registerPciMetrics } from './pci-metrics';
import { ACCEL0, MEMORY_BAR, NVME0, expectErrno, platform, type Platform } from './testing/platform';

describe('PCI metrics on /metrics', () => {
  const dir = useTempShmDir();
  let p: Platform;
  let registry: Registry;
  let stop: () => void;

  /** The value a scraper reads for the sample of `name` with exactly these labels (text format); 0 when there is none. */
  async function sample(name: string, labels: Record<string, string>): Promise<number> {
    const line = `${name}{${Object.entries(labels).map(([k, v]) => `${k}="${v}"`).join(',')}} `;
    const found = (await registry.metrics()).split('\n').find((l) => l.startsWith(line));
    return found === undefined ? 0 : Number(found.slice(line.length));
  }

  beforeEach(() => {
    p = platform(dir());
    registry = new Registry();
    stop = registerPciMetrics(registry, p.bus);
  });

  afterEach(() => {
    stop();
    p.bus.close();
  });

  describe('p2p_pci_mmio_accesses_total', () => {
    it('counts MMIO reads and writes by function, BAR and op', async () => {
      p.bus.mmioWrite(ACCEL0, MEMORY_BAR, 0, 4, 0x1234);
      p.bus.mmioWrite(ACCEL0, MEMORY_BAR, 4, 4, 0x5678);
      p.bus.mmioRead(ACCEL0, MEMORY_BAR, 0, 4);
      p.bus.mmioRead(NVME0, 0, 0, 4);
      expect(await sample('p2p_pci_mmio_accesses_total', { bdf: ACCEL0, bar: '2', op: 'write' })).to.equal(2);
      expect(await sample('p2p_pci_mmio_accesses_total', { bdf: ACCEL0, bar: '2', op: 'read' })).to.equal(1);
      expect(await sample('p2p_pci_mmio_accesses_total', { bdf: NVME0, bar: '0', op: 'read' })).to.equal(1);
      expect(await sample('p2p_pci_mmio_accesses_total', { bdf: NVME0, bar: '0', op: 'write' })).to.equal(0);
    });

    it('counts a bulk transfer as one access', async () => {
      p.bus.bulkWrite(ACCEL0, MEMORY_BAR, 0, new Uint8Array(8192));
      p.bus.bulkRead(ACCEL0, MEMORY_BAR, 0, 8192);
      expect(await sample('p2p_pci_mmio_accesses_total', { bdf: ACCEL0, bar: '2', op: 'write' })).to.equal(1);
      expect(await sample('p2p_pci_mmio_accesses_total', { bdf: ACCEL0, bar: '2', op: 'read' })).to.equal(1);
    });

    it('counts an access the function does not claim (decode off), not one it refuses (EINVAL)', async () => {
      p.bus.configWrite(ACCEL0, PCI_COMMAND, 2, 0);
      expect(p.bus.mmioRead(ACCEL0, MEMORY_BAR, 0, 4).decoded).to.equal(false);
      expectErrno(() => p.bus.mmioRead(ACCEL0, MEMORY_BAR, 0, 3), 'EINVAL');
      expect(await sample('p2p_pci_mmio_accesses_total', { bdf: ACCEL0, bar: '2', op: 'read' })).to.equal(1);
    });
  });

  describe('p2p_pci_resets_total', () => {
    it('counts an FLR and a conventional reset by kind', async () => {
      p.bus.functionLevelReset(NVME0);
      p.bus.resetFunction(ACCEL0);
      expect(await sample('p2p_pci_resets_total', { bdf: NVME0, kind: 'flr' })).to.equal(1);
      expect(await sample('p2p_pci_resets_total', { bdf: ACCEL0, kind: 'reset' })).to.equal(1);
    });

    it('counts the power-on reset of a re-plugged function', async () => {
      p.bus.unplug(ACCEL0);
      p.bus.replug(ACCEL0);
      expect(await sample('p2p_pci_resets_total', { bdf: ACCEL0, kind: 'power-on' })).to.equal(1);
    });
  });

  it('p2p_pci_power_transitions_total: D0 -> D3hot and back, by from and to', async () => {
    p.bus.setPowerState(ACCEL0, 'D3hot');
    p.bus.setPowerState(ACCEL0, 'D0');
    p.bus.setPowerState(ACCEL0, 'D0');
    expect(await sample('p2p_pci_power_transitions_total', { bdf: ACCEL0, from: 'D0', to: 'D3hot' })).to.equal(1);
    expect(await sample('p2p_pci_power_transitions_total', { bdf: ACCEL0, from: 'D3hot', to: 'D0' })).to.equal(1);
  });

  it('stops counting events once unsubscribed', async () => {
    stop();
    p.bus.functionLevelReset(NVME0);
    expect(await sample('p2p_pci_resets_total', { bdf: NVME0, kind: 'flr' })).to.equal(0);
  });
});
