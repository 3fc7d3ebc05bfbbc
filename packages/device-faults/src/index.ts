import * as fs from 'node:fs';
import * as path from 'node:path';
import { pci } from '@p2p/proto';
import type { Peer } from '@p2p/rpc';

/**
 * The device faults by name, as an administrator or the hardware causes
 * them: each is what the platform does, and every exporter and importer
 * sees it the way the kernel's would (revoke, move_notify, all-ones reads).
 */
export const DEVICE_FAULTS = {
  flr: 'Function Level Reset (PCI_EXP_DEVCTL_BCR_FLR): the function resets, its BARs stop decoding until a driver re-enables them',
  reset: 'a reset by whatever method the function supports (pci_reset_function)',
  'mem-off': 'clear Memory Space Enable in PCI_COMMAND: BAR accesses stop decoding, vfio-pci revokes the dma-bufs',
  'mem-on': 'set Memory Space Enable in PCI_COMMAND again',
  d3: 'put the function in D3hot (PCI_PM_CTRL): no decode until D0',
  d0: 'bring the function back to D0',
  unplug: 'surprise hot-unplug: the function disappears from the bus',
  replug: 'plug an unplugged function back in',
} as const;

export type DeviceFault = keyof typeof DEVICE_FAULTS;

export function isDeviceFault(name: string): name is DeviceFault {
  return Object.hasOwn(DEVICE_FAULTS, name);
}

/** pci-emu's client, as the platform (or the administrator) holds it. */
export type PlatformClient = Peer<typeof pci.PciEmuServiceDefinition>['client'];

/** D0, D3hot as lspci spells them. */
export function powerStateName(state: pci.PowerState): string {
  return state === pci.PowerState.POWER_STATE_D3HOT ? 'D3hot' : state === pci.PowerState.POWER_STATE_D0 ? 'D0' : '?';
}

/** Applies one device fault to `bdf` through pci-emu and says what happened. */
export async function applyDeviceFault(platform: PlatformClient, bdf: string, fault: DeviceFault): Promise<string> {
  switch (fault) {
    case 'flr':
      await platform.functionLevelReset({ bdf });
      return `${bdf}: Function Level Reset done`;
    case 'reset':
      await platform.resetFunction({ bdf });
      return `${bdf}: reset`;
    case 'mem-off':
    case 'mem-on': {
      // Loaded here: the service's module takes half a second to load, which every other command would pay.
      const { pciRegs } = await import('@p2p/vfio-pci');
      const { value } = await platform.configRead({ bdf, offset: pciRegs.PCI_COMMAND, width: 2 });
      const command = fault === 'mem-off' ? value & ~pciRegs.PCI_COMMAND_MEMORY : value | pciRegs.PCI_COMMAND_MEMORY;
      await platform.configWrite({ bdf, offset: pciRegs.PCI_COMMAND, width: 2, value: command, hardware: true });
      return `${bdf}: PCI_COMMAND 0x${value.toString(16).padStart(4, '0')} -> 0x${command.toString(16).padStart(4, '0')} (Memory Space ${fault === 'mem-off' ? 'off' : 'on'})`;
    }
    case 'd3':
    case 'd0': {
      const state = fault === 'd3' ? pci.PowerState.POWER_STATE_D3HOT : pci.PowerState.POWER_STATE_D0;
      const { previous } = await platform.setPowerState({ bdf, state });
      return `${bdf}: ${powerStateName(previous)} -> ${powerStateName(state)}`;
    }
    case 'unplug':
      await platform.unplug({ bdf });
      return `${bdf}: unplugged`;
    case 'replug':
      await platform.replug({ bdf });
      return `${bdf}: plugged back in`;
  }
}

/**
 * `length` bytes of a BAR from `offset` as the device holds them, whatever
 * its decode state, read from the segment files behind it
 * (GetBarSegments, the platform's): a write that reached the BAR shows here,
 * one through a mapping of files the BAR has since left (a fenced
 * importer's) does not. The caller must share the services' tmpfs.
 */
export async function readBarSegments(platform: PlatformClient, bdf: string, bar: number, offset: number, length: number): Promise<Buffer> {
  const { directory, extents } = await platform.getBarSegments({ bdf, bar, offset: BigInt(offset), length: BigInt(length) });
  const out = Buffer.alloc(length);
  let at = 0;
  for (const extent of extents) {
    const fd = fs.openSync(path.join(directory, extent.segment), 'r');
    try {
      fs.readSync(fd, out, at, Number(extent.length), Number(extent.offset));
    } finally {
      fs.closeSync(fd);
    }
    at += Number(extent.length);
  }
  return out;
}
