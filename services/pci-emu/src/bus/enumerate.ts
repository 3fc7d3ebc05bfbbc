import type { DeviceModel } from '../devices/device-model';
import { parseBdf } from '../topology/bdf';
import type { Topology } from '../topology/topology';
import { assignBarAddresses, windowFor, type BarRequest } from './assign-bar-addresses';
import type { BarAddresses } from './pci-function';

/** True if another function shares the device number: PCI_HEADER_TYPE_MFD must be set. */
export function isMultiFunction(topology: Topology, bdf: string): boolean {
  const self = parseBdf(bdf);
  return topology.functions.some((other) => {
    const peer = parseBdf(other.bdf);
    return other.bdf !== bdf && peer.domain === self.domain && peer.bus === self.bus && peer.device === self.device;
  });
}

/**
 * Bus addresses for every BAR and ROM of `devices` (parallel to
 * topology.functions), host bridge by host bridge, as firmware assigns them
 * before the OS starts.
 */
export function enumerateBarAddresses(topology: Topology, devices: readonly DeviceModel[]): BarAddresses[] {
  const result = devices.map((device) => ({ bars: device.bars.map(() => 0), rom: 0 }));
  for (const bridge of topology.hostBridges) {
    const requests: BarRequest[] = [];
    const slots: { fn: number; bar: number | 'rom' }[] = [];
    topology.functions.forEach((spec, fn) => {
      if (topology.node(spec.bdf)?.hostBridge !== bridge.name) {
        return;
      }
      const device = devices[fn]!;
      device.bars.forEach((bar, i) => {
        requests.push({ owner: `${spec.bdf} BAR ${bar.index}`, size: bar.size, window: windowFor(bar) });
        slots.push({ fn, bar: i });
      });
      if (device.rom) {
        requests.push({ owner: `${spec.bdf} ROM`, size: device.rom.length, window: 'mmio32' });
        slots.push({ fn, bar: 'rom' });
      }
    });
    assignBarAddresses(bridge, requests).forEach((address, i) => {
      const { fn, bar } = slots[i]!;
      if (bar === 'rom') {
        result[fn]!.rom = address;
      } else {
        result[fn]!.bars[bar] = address;
      }
    });
  }
  return result;
}
