import type { PlatformClient } from '@p2p/device-faults';
import { dmabuf, vfio } from '@p2p/proto';
import { connectPeer } from '@p2p/rpc';
import type { Deployment } from './driver/driver';
import type { SegmentFiles } from './driver/segment-files';

/** The registry processes that are services' own sessions: vfio-pci's and each NIC's (rdma-nic/<bdf>). */
function isServiceProcess(name: string): boolean {
  return name === 'vfio-pci' || name.startsWith('rdma-nic/');
}

/** What is left once the workload closed everything, by kind: each entry a leak. */
export interface LeftOver {
  readonly processes: string[];
  readonly buffers: string[];
  readonly vfio: string[];
  /** IOMMU domains pci-emu still has: every one belonged to a process of the workload (an iommufd IOAS, a type1 container). */
  readonly iommu: string[];
  readonly segments: string[];
}

/**
 * Lists what nobody should hold after the run: registry processes that are
 * not a service's session, buffers but the NICs' link rings (a system-heap
 * buffer whose every fd and attachment is a NIC's: they live as long as the
 * link), vfio devices still open and dma-bufs not forgotten, and segment
 * files no live buffer or BAR owns (heap segments of no ring, pci-emu
 * segments of an older incarnation or generation of a BAR), and IOMMU
 * domains (no service keeps one of its own).
 */
export async function leftOver(deployment: Deployment, platform: PlatformClient, accel: { bdf: string; bar: number }): Promise<LeftOver> {
  const registry = connectPeer(dmabuf.DmaBufRegistryServiceDefinition, deployment.registry, { name: 'dmabuf-registry', token: deployment.adminToken, tls: deployment.tls });
  const vfioPci = connectPeer(vfio.VfioPciServiceDefinition, deployment.vfioPci, { name: 'vfio-pci', token: deployment.adminToken, tls: deployment.tls });
  try {
    const { processes } = await registry.client.listProcesses({});
    const { buffers } = await registry.client.getBufInfo({});
    const nicPids = new Set(processes.filter((p) => p.name.startsWith('rdma-nic/')).map((p) => p.pid));
    const holders = (bufferId: bigint): number[] => processes.filter((p) => p.fds.some((fd) => fd.kind === dmabuf.FileKind.FILE_KIND_DMA_BUF && fd.fileId === bufferId)).map((p) => p.pid);
    const isRing = (b: dmabuf.BufInfo): boolean =>
      b.exporter === 'system-heap' && holders(b.bufferId).length > 0 && holders(b.bufferId).every((pid) => nicPids.has(pid)) && b.attachments.every((a) => nicPids.has(a.importerPid));
    const rings = new Set(buffers.filter(isRing).map((b) => b.bufferId.toString()));
    const { devices, dmaBufs } = await vfioPci.client.listDevices({});
    const { domains } = await platform.listIommuDomains({});
    return {
      processes: processes.filter((p) => !isServiceProcess(p.name)).map((p) => `pid ${p.pid} (${p.name}): ${p.fds.length} fds`),
      buffers: buffers.filter((b) => !rings.has(b.bufferId.toString())).map((b) => `buffer ${b.bufferId} (${b.exporter}, ${b.size} bytes, refcount ${b.refcount})`),
      vfio: [
        ...devices.filter((d) => d.openCount > 0).map((d) => `${d.bdf} open ${d.openCount} times (owner pid ${d.ownerPid})`),
        ...dmaBufs.filter((d) => !d.forgotten).map((d) => `dma-buf ${d.handle} of ${d.providerBdf} BAR${d.regionIndex}`),
      ],
      iommu: domains.map((d) => `domain ${d.domainId}: ${d.bdfs.length === 0 ? 'no function attached' : `attached to ${d.bdfs.join(', ')}`}, ${d.mappings.length} mappings, ${d.mappedBytes} bytes`),
      segments: await strayFiles(deployment.segments, rings, platform, accel),
    };
  } finally {
    registry.close();
    vfioPci.close();
  }
}

const HEAP_SEGMENT = /^dmabuf-heap\.([^.]+)\.(\d+)\.\d+$/;
const BAR_SEGMENT = /^pci-emu\.([^.]+)\.(.+-bar\d+)\.g(\d+)\.\d+$/;

async function strayFiles(segments: SegmentFiles, rings: Set<string>, platform: PlatformClient, accel: { bdf: string; bar: number }): Promise<string[]> {
  const { extents } = await platform.getBarSegments({ bdf: accel.bdf, bar: accel.bar, offset: 0n, length: 4096n });
  const current = BAR_SEGMENT.exec(extents[0]?.segment ?? '')?.[1];
  const files = await segments.list();
  const newest = new Map<string, number>();
  for (const name of files) {
    const bar = BAR_SEGMENT.exec(name);
    if (bar !== null && bar[1] === current) newest.set(bar[2]!, Math.max(newest.get(bar[2]!) ?? 0, Number(bar[3])));
  }
  return files.filter((name) => {
    const heap = HEAP_SEGMENT.exec(name);
    if (heap !== null) return !rings.has(heap[2]!);
    const bar = BAR_SEGMENT.exec(name);
    if (bar !== null) return bar[1] !== current || Number(bar[3]) < newest.get(bar[2]!)!;
    return name !== 'pci-emu.write-notices';
  });
}
