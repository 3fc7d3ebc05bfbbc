import type { TlsConfig } from '@p2p/auth';
import { readBarSegments } from '@p2p/device-faults';
import { pci } from '@p2p/proto';
import { connectPeer } from '@p2p/rpc';

/** Where to ask pci-emu for a BAR's memory: its address and the administrator's token (GetBarSegments is the platform's). */
export interface PlatformAccess {
  readonly pciEmu: string;
  readonly adminToken: string;
  readonly tls?: TlsConfig;
}

/** `length` bytes of a BAR from `offset` as the device holds them (readBarSegments), over a connection of its own. */
export async function deviceMemory(access: PlatformAccess, bdf: string, bar: number, offset: number, length: number): Promise<Buffer> {
  const platform = connectPeer(pci.PciEmuServiceDefinition, access.pciEmu, { name: 'pci-emu', tls: access.tls, token: access.adminToken });
  try {
    return await readBarSegments(platform.client, bdf, bar, offset, length);
  } finally {
    platform.close();
  }
}
