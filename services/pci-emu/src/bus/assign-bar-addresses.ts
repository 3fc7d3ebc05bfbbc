import { errno } from '@p2p/errno';
import type { AddressWindow, HostBridge } from '../topology/topology';

/** One BAR (or ROM) needing a bus address. */
export interface BarRequest {
  readonly owner: string;
  readonly size: number;
  readonly window: 'mmio32' | 'mmio64' | 'io';
}

/**
 * Which host-bridge window a BAR comes from, as a bridge's windows dictate:
 * only 64-bit prefetchable BARs may go above 4 GiB (the prefetchable window);
 * the non-prefetchable window is 32-bit, so 64-bit non-prefetchable BARs and
 * ROMs live below 4 GiB too.
 */
export function windowFor(bar: { space: 'memory' | 'io'; is64Bit: boolean; prefetchable: boolean }): BarRequest['window'] {
  if (bar.space === 'io') {
    return 'io';
  }
  return bar.is64Bit && bar.prefetchable ? 'mmio64' : 'mmio32';
}

/**
 * Gives each request a naturally aligned bus address inside its host bridge
 * window, largest first as pbus_size_mem()/__assign_resources_sorted() order
 * them, so power-of-two BARs pack without holes. Returns addresses in request
 * order; EINVAL names the window that is too small. Bridge windows below the
 * host bridge are not modelled: routing is by topology, not by address.
 */
export function assignBarAddresses(bridge: HostBridge, requests: readonly BarRequest[]): number[] {
  const addresses = new Array<number>(requests.length);
  const cursors: Record<BarRequest['window'], number> = {
    mmio32: bridge.mmio32.base,
    mmio64: bridge.mmio64.base,
    io: bridge.io.base,
  };
  const order = [...requests.keys()].sort((a, b) => requests[b]!.size - requests[a]!.size || a - b);
  for (const i of order) {
    const request = requests[i]!;
    const window: AddressWindow = bridge[request.window];
    const address = Math.ceil(cursors[request.window] / request.size) * request.size;
    if (address + request.size > window.base + window.size) {
      throw errno(
        'EINVAL',
        `host bridge ${bridge.name}: ${request.window} window 0x${window.base.toString(16)}+0x${window.size.toString(16)} has no room for ${request.owner} (${request.size} bytes)`,
      );
    }
    addresses[i] = address;
    cursors[request.window] = address + request.size;
  }
  return addresses;
}
