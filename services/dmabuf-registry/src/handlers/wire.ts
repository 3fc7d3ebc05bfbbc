import { errno } from '@p2p/errno';
import { dmabuf } from '@p2p/proto';
import type { BufInfo, DmaMapType, FileKind, OwnerExtent, RegistryEvent, Transport, UserPageExtent, VmaInfo } from '../index';

/** A 64-bit wire number as a JS number; ids and offsets past 2^53 cannot exist here. */
export function toNumber(value: bigint, field: string): number {
  if (value > BigInt(Number.MAX_SAFE_INTEGER)) throw errno('EINVAL', `${field} ${value} is out of range`);
  return Number(value);
}

export const fileKindToWire = (kind: FileKind): dmabuf.FileKind =>
  kind === 'dma-buf' ? dmabuf.FileKind.FILE_KIND_DMA_BUF : dmabuf.FileKind.FILE_KIND_OWNED;

export const transportToWire = (transport: Transport): dmabuf.Transport =>
  transport === 'shared-memory' ? dmabuf.Transport.TRANSPORT_SHARED_MEMORY : dmabuf.Transport.TRANSPORT_STREAM;

const MAP_TYPES: Record<DmaMapType, dmabuf.DmaMapType> = {
  HOST_MEMORY: dmabuf.DmaMapType.DMA_MAP_TYPE_HOST_MEMORY,
  BUS_ADDR: dmabuf.DmaMapType.DMA_MAP_TYPE_BUS_ADDR,
  THRU_HOST_BRIDGE: dmabuf.DmaMapType.DMA_MAP_TYPE_THRU_HOST_BRIDGE,
};

export const mapTypeToWire = (type: DmaMapType): dmabuf.DmaMapType => MAP_TYPES[type];

export function extentToWire(extent: OwnerExtent): dmabuf.Extent {
  return { segment: extent.segment, segmentOffset: BigInt(extent.segmentOffset), length: BigInt(extent.length), dmaAddress: extent.dmaAddress };
}

export function extentFromWire(extent: dmabuf.Extent): OwnerExtent {
  return {
    segment: extent.segment,
    segmentOffset: toNumber(extent.segmentOffset, 'segment_offset'),
    length: toNumber(extent.length, 'length'),
    dmaAddress: extent.dmaAddress,
  };
}

export function bufInfoToWire(info: BufInfo): dmabuf.BufInfo {
  return {
    bufferId: BigInt(info.bufferId),
    size: BigInt(info.size),
    exporter: info.exporter,
    refcount: info.refcount,
    openFlags: info.openFlags,
    revoked: info.revoked,
    orphaned: info.orphaned,
    providerBdf: info.providerBdf,
    attachments: info.attachments.map((a) => ({
      attachmentId: BigInt(a.attachmentId),
      importerPid: a.importerPid,
      importerBdf: a.importerBdf,
      dynamic: a.dynamic,
      peer2peer: a.peer2peer,
      mapped: a.mapped,
      pinned: a.pinned,
    })),
    userPins: info.userPins,
  };
}

export function vmaToWire(vma: VmaInfo): dmabuf.Vma {
  return {
    addr: BigInt(vma.addr),
    length: BigInt(vma.length),
    bufferId: BigInt(vma.bufferId),
    offset: BigInt(vma.offset),
    prot: vma.prot,
    deviceMemory: vma.deviceMemory,
  };
}

export function userPageExtentToWire(extent: UserPageExtent): dmabuf.UserPageExtent {
  return { segment: extent.segment, segmentOffset: BigInt(extent.segmentOffset), length: BigInt(extent.length) };
}

export function eventToWire(event: RegistryEvent): dmabuf.WatchEventsResponse {
  return {
    sequence: BigInt(event.sequence),
    kind: dmabuf.EventKind[`EVENT_KIND_${event.kind}`],
    bufferId: BigInt(event.bufferId ?? 0),
    attachmentId: BigInt(event.attachmentId ?? 0),
    pid: event.pid ?? 0,
    detail: event.detail,
    monotonicNs: event.time.monotonicNs,
    unixNanos: event.time.unixNanos,
    moveId: BigInt(event.moveId ?? 0),
    notificationId: BigInt(event.notificationId ?? 0),
  };
}
