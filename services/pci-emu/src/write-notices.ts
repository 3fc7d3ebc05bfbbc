import * as path from 'node:path';
import { PCI_EMU_SEGMENT_PREFIX, type WriteNotice, WRITE_NOTICE_SOCKET, WriteNoticeServer } from '@p2p/shm';
import type { PciBus } from './bus/pci-bus';
import type { RelocatableMemory } from './relocatable-memory';

/** `<name>.g<generation>.<chunk>`: what follows the instance prefix in a BAR segment's name (RelocatableMemory, SharedMemory). */
const SEGMENT_OF_MEMORY = /^(.+)\.g\d+\.\d+$/;

/**
 * pci-emu's end of the write-notice socket: a bus master in another process
 * (an RDMA NIC writing through a dma-buf of BAR memory) names the segment
 * file and range it wrote; the notice becomes the posted write it stands
 * for, which the BAR's device hears of (PciBus.postedWrite, path 'p2p').
 * A notice for a file that is no current BAR segment of this instance (a
 * predecessor's, a relocated generation's, the heap's, a forged name) is
 * dropped, as is one whose function would not have claimed the write. A
 * device that fails on one goes to `report`.
 */
export function listenForWriteNotices(
  directory: string,
  instance: string,
  memories: ReadonlyMap<string, RelocatableMemory>,
  bus: PciBus,
  report: (error: unknown) => void,
): Promise<WriteNoticeServer> {
  const prefix = `${PCI_EMU_SEGMENT_PREFIX}${instance}.`;
  const deliver = (notice: WriteNotice): void => {
    if (!notice.segment.startsWith(prefix)) return;
    const name = SEGMENT_OF_MEMORY.exec(notice.segment.slice(prefix.length))?.[1];
    const offset = name === undefined ? undefined : memories.get(name)?.offsetOf(notice.segment, notice.offset);
    if (name !== undefined && offset !== undefined) bus.postedWrite(name, offset, notice.length);
  };
  return WriteNoticeServer.listen(path.join(directory, WRITE_NOTICE_SOCKET), deliver, { report });
}
