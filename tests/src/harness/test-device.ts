import * as fs from 'node:fs';
import * as path from 'node:path';
import { DEFAULT_TOPOLOGY } from '@p2p/pci-emu';

/**
 * The generic test device, added under switch B (with accel0 and nic1):
 * BAR0 is 64 KiB of scratch registers whose pages 1-2 are a memory window,
 * every write into which (MMIO or a bus master's) it reports as a
 * BarWritten event.
 */
export const TESTDEV = '0000:0a:00.0';
export const TESTDEV_WINDOW = { offset: 0x1000, length: 0x2000 } as const;

/** Writes the default topology with the test device into `dir`; returns the file, for PCI_EMU_TOPOLOGY. */
export function writeTestDeviceTopology(dir: string): string {
  const topology = structuredClone(DEFAULT_TOPOLOGY);
  topology.hostBridges[0]!.rootPorts[1]!.switch!.downstreamPorts.push({
    bdf: '06:03.0',
    functions: [{ kind: 'generic', name: 'testdev', bdf: '0a:00.0', bars: [{ index: 0, size: '64KiB', bits: 64, window: { ...TESTDEV_WINDOW } }] }],
  });
  const file = path.join(dir, 'testdev.json');
  fs.writeFileSync(file, JSON.stringify(topology));
  return file;
}
