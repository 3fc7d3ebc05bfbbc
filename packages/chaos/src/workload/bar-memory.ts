import type { PlatformClient } from '@p2p/device-faults';
import type { SegmentFiles } from '../driver/segment-files';

/**
 * `length` bytes of a BAR from `offset` as the device holds them, whatever
 * its decode (pci-emu's BulkRead reads all ones while the BAR does not
 * decode): pci-emu names the segment files behind the range, and they are
 * read where the driver reaches them.
 */
export async function readBarMemory(platform: PlatformClient, segments: SegmentFiles, bdf: string, bar: number, offset: number, length: number): Promise<Buffer> {
  const { extents } = await platform.getBarSegments({ bdf, bar, offset: BigInt(offset), length: BigInt(length) });
  return Buffer.concat(await Promise.all(extents.map((extent) => segments.read(extent.segment, Number(extent.offset), Number(extent.length)))));
}
