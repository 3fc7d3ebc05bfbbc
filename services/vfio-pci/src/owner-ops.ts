import type { OwnerCallInfo, OwnerOps } from '@p2p/dmabuf-client';
import { errno } from '@p2p/errno';
import type { dmabuf } from '@p2p/proto';
import type { DmaBufExtent } from './dma-buf/exporter-ops';
import type { VfioPci } from './vfio-pci';

/**
 * struct dma_buf_ops of vfio's dma-bufs (vfio_pci_dmabuf_ops), and the
 * release of its device files, as the registry calls them over the owner
 * session: every op is addressed by the handle the file was created with,
 * but fdClosed, which names the closed (pid, fd).
 */
export function vfioOwnerOps(vfio: () => VfioPci): OwnerOps {
  const handleOf = (call: OwnerCallInfo): string => {
    if (call.handle === undefined || call.handle === '') throw errno('EINVAL', `owner call for file ${call.fileId} carries no handle`);
    return call.handle;
  };
  const toWire = (extents: readonly DmaBufExtent[]): dmabuf.Extent[] =>
    extents.map((e) => ({ segment: e.segment, segmentOffset: BigInt(e.segmentOffset), length: BigInt(e.length), dmaAddress: e.dmaAddress }));
  return {
    attach: (call) => vfio().attach(handleOf(call), call.peer2peer),
    pin: (call) => vfio().pin(handleOf(call)),
    unpin: (call) => vfio().unpin(handleOf(call)),
    map: async (call) => toWire(await vfio().map(handleOf(call))),
    cpuMap: async (call) => toWire(await vfio().cpuMap(handleOf(call))),
    fence: (call) => vfio().fence(handleOf(call)),
    release: (call) => vfio().release(handleOf(call)),
    fdClosed: (call) => vfio().fdClosed(call.pid, call.fd),
  };
}
