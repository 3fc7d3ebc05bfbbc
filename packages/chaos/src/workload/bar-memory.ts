import { type PlatformClient, readBarSegments } from '@p2p/device-faults';

/**
 * `length` bytes of a BAR from `offset` as the device holds them, whatever
 * its decode: read from the segment files behind it when this process
 * shares the services' tmpfs (`shmDir`), else through pci-emu's BulkRead,
 * which reads all ones while the BAR does not decode.
 */
export async function readBarMemory(platform: PlatformClient, shmDir: string | undefined, bdf: string, bar: number, offset: number, length: number): Promise<Buffer> {
  if (shmDir === undefined) return Buffer.from((await platform.bulkRead({ bdf, bar, offset: BigInt(offset), length: BigInt(length) })).data);
  return readBarSegments(platform, bdf, bar, offset, length);
}
