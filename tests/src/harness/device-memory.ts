import * as fs from 'node:fs';
import * as path from 'node:path';
import type { TlsConfig } from '@p2p/auth';
import { pci } from '@p2p/proto';
import { connectPeer } from '@p2p/rpc';

/** Where to ask pci-emu for a BAR's memory: its address and the administrator's token (GetBarSegments is the platform's). */
export interface PlatformAccess {
  readonly pciEmu: string;
  readonly adminToken: string;
  readonly tls?: TlsConfig;
}

/**
 * `length` bytes of a BAR from `offset`, read from the segment files that
 * hold the device's memory (GetBarSegments): what the device holds whatever
 * its decode state, and whoever mapped which file. A write that reached the
 * BAR shows here; one through a mapping of files the BAR has since left
 * (a fenced importer's) does not.
 */
export async function deviceMemory(access: PlatformAccess, bdf: string, bar: number, offset: number, length: number): Promise<Buffer> {
  const platform = connectPeer(pci.PciEmuServiceDefinition, access.pciEmu, { name: 'pci-emu', tls: access.tls, token: access.adminToken });
  try {
    const { directory, extents } = await platform.client.getBarSegments({ bdf, bar, offset: BigInt(offset), length: BigInt(length) });
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
  } finally {
    platform.close();
  }
}
