import type { Authenticator } from '@p2p/auth';
import { iommufd as wire } from '@p2p/proto';
import { actingPidOf, type CallWithMetadata, unary } from '@p2p/server';
import type { IommufdListing, IommufdObjectListing } from '../iommufd/iommufd';
import type { Iommufd } from '../iommufd/iommufd';
import type { IommuInfoCap } from '../iommufd/vfio-compat';
import { U32_MAX } from '../uapi/u64';
import { VFIO_DMA_MAP_MINSZ, VFIO_DMA_UNMAP_MINSZ } from '../uapi/vfio';

/**
 * IommufdService: decode, call iommufd, encode. Every rule and errno lives
 * in Iommufd; a request's argsz of 0 stands for the struct's own size (the
 * whole capability chain for GetInfo).
 */
export function iommufdHandlers(iommufd: Iommufd, auth: Authenticator): wire.IommufdServiceServer {
  /** The process a call acts in: the caller's own, proven by its credential (see actingPid). */
  const as = async (call: CallWithMetadata, pid: number, what: string): Promise<number> => actingPidOf(auth, call, pid, what);
  return {
    openIommufd: unary(async (req: wire.OpenIommufdRequest, call) => ({ fd: await iommufd.open(await as(call, req.pid, 'OpenIommufd'), 'iommu') })),
    openVfioContainer: unary(async (req: wire.OpenVfioContainerRequest, call) => ({
      fd: await iommufd.open(await as(call, req.pid, 'OpenVfioContainer'), 'vfio-container'),
    })),
    destroy: unary(async (req: wire.DestroyRequest, call) => {
      await iommufd.destroy(await as(call, req.pid, 'Destroy'), req.fd, req.id);
      return {};
    }),
    ioasAlloc: unary(async (req: wire.IoasAllocRequest, call) => ({ outIoasId: await iommufd.ioasAlloc(await as(call, req.pid, 'IoasAlloc'), req.fd, req.flags) })),
    ioasIovaRanges: unary(async (req: wire.IoasIovaRangesRequest, call) => {
      const answer = await iommufd.ioasIovaRanges(await as(call, req.pid, 'IoasIovaRanges'), req.fd, { ioasId: req.ioasId, numIovas: req.numIovas, reserved: req.reserved });
      return { numIovas: answer.numIovas, allowedIovas: answer.ranges.map((r) => ({ start: r.start, last: r.last })), outIovaAlignment: answer.alignment };
    }),
    ioasAllowIovas: unary(async (req: wire.IoasAllowIovasRequest, call) => {
      await iommufd.ioasAllowIovas(await as(call, req.pid, 'IoasAllowIovas'), req.fd, { ioasId: req.ioasId, reserved: req.reserved, ranges: req.allowedIovas });
      return {};
    }),
    ioasMap: unary(async (req: wire.IoasMapRequest, call) => ({
      iova: await iommufd.ioasMap(await as(call, req.pid, 'IoasMap'), req.fd, {
        flags: req.flags,
        ioasId: req.ioasId,
        reserved: req.reserved,
        userVa: req.userVa,
        length: req.length,
        iova: req.iova,
      }),
    })),
    ioasMapFile: unary(async (req: wire.IoasMapFileRequest, call) => ({
      iova: await iommufd.ioasMapFile(await as(call, req.pid, 'IoasMapFile'), req.fd, {
        flags: req.flags,
        ioasId: req.ioasId,
        fd: req.mapFd,
        start: req.start,
        length: req.length,
        iova: req.iova,
      }),
    })),
    ioasUnmap: unary(async (req: wire.IoasUnmapRequest, call) => ({
      length: await iommufd.ioasUnmap(await as(call, req.pid, 'IoasUnmap'), req.fd, { ioasId: req.ioasId, iova: req.iova, length: req.length }),
    })),
    ioasCopy: unary(async (req: wire.IoasCopyRequest, call) => ({
      dstIova: await iommufd.ioasCopy(await as(call, req.pid, 'IoasCopy'), req.fd, {
        flags: req.flags,
        dstIoasId: req.dstIoasId,
        srcIoasId: req.srcIoasId,
        length: req.length,
        dstIova: req.dstIova,
        srcIova: req.srcIova,
      }),
    })),
    vfioIoas: unary(async (req: wire.VfioIoasRequest, call) => ({
      ioasId: await iommufd.vfioIoas(await as(call, req.pid, 'VfioIoas'), req.fd, { op: req.op, ioasId: req.ioasId, reserved: req.reserved }),
    })),
    vfioGetApiVersion: unary(async (req: wire.VfioGetApiVersionRequest, call) => ({ version: await iommufd.vfioGetApiVersion(await as(call, req.pid, 'VfioGetApiVersion'), req.fd) })),
    vfioCheckExtension: unary(async (req: wire.VfioCheckExtensionRequest, call) => ({
      result: await iommufd.vfioCheckExtension(await as(call, req.pid, 'VfioCheckExtension'), req.fd, req.extension),
    })),
    vfioSetIommu: unary(async (req: wire.VfioSetIommuRequest, call) => {
      await iommufd.vfioSetIommu(await as(call, req.pid, 'VfioSetIommu'), req.fd, req.type);
      return {};
    }),
    vfioIommuGetInfo: unary(async (req: wire.VfioIommuGetInfoRequest, call) => {
      const info = await iommufd.vfioIommuGetInfo(await as(call, req.pid, 'VfioIommuGetInfo'), req.fd, req.argsz === 0 ? U32_MAX : req.argsz);
      return { argsz: info.argsz, flags: info.flags, iovaPgsizes: info.iovaPgsizes, capOffset: info.capOffset, caps: info.caps.map(capToWire) };
    }),
    vfioIommuMapDma: unary(async (req: wire.VfioIommuMapDmaRequest, call) => {
      await iommufd.vfioIommuMapDma(await as(call, req.pid, 'VfioIommuMapDma'), req.fd, {
        argsz: req.argsz === 0 ? VFIO_DMA_MAP_MINSZ : req.argsz,
        flags: req.flags,
        vaddr: req.vaddr,
        iova: req.iova,
        size: req.size,
      });
      return {};
    }),
    vfioIommuUnmapDma: unary(async (req: wire.VfioIommuUnmapDmaRequest, call) => ({
      size: await iommufd.vfioIommuUnmapDma(await as(call, req.pid, 'VfioIommuUnmapDma'), req.fd, {
        argsz: req.argsz === 0 ? VFIO_DMA_UNMAP_MINSZ : req.argsz,
        flags: req.flags,
        iova: req.iova,
        size: req.size,
      }),
    })),
    listIommufds: unary(() => ({ iommufds: iommufd.contexts().map(listingToWire) })),
  };
}

function capToWire(cap: IommuInfoCap): wire.IommuInfoCap {
  const header = { id: cap.id, version: 1, offset: cap.offset, next: cap.next };
  return 'avail' in cap
    ? { ...header, body: { $case: 'dmaAvail', value: { avail: cap.avail } } }
    : { ...header, body: { $case: 'iovaRange', value: { nrIovas: cap.nrIovas, iovaRanges: cap.ranges.map((r) => ({ start: r.start, last: r.last })) } } };
}

const AREA_KINDS = { user: wire.IoasAreaKind.IOAS_AREA_KIND_USER, file: wire.IoasAreaKind.IOAS_AREA_KIND_FILE, dmabuf: wire.IoasAreaKind.IOAS_AREA_KIND_DMABUF } as const;

function objectToWire(object: IommufdObjectListing): wire.IommufdObject {
  switch (object.type) {
    case 'ioas':
      return {
        id: object.id,
        object: {
          $case: 'ioas',
          value: { domainIds: [...object.domains], areas: object.areas.map((a) => ({ iova: a.iova, length: a.length, prot: a.prot, kind: AREA_KINDS[a.kind], revoked: a.revoked })) },
        },
      };
    case 'hwpt-paging':
      return { id: object.id, object: { $case: 'hwpt', value: { ioasId: object.ioasId, domainId: object.domainId, bdfs: [...object.bdfs] } } };
    case 'device':
      return { id: object.id, object: { $case: 'device', value: { bdf: object.bdf, hwptId: object.hwptId ?? 0 } } };
  }
}

function listingToWire(listing: IommufdListing): wire.IommufdListing {
  return {
    handle: listing.handle,
    pid: listing.pid,
    node: listing.node === 'iommu' ? wire.IommufdNode.IOMMUFD_NODE_IOMMU : wire.IommufdNode.IOMMUFD_NODE_VFIO_CONTAINER,
    fileOpen: listing.fileOpen,
    boundDevices: listing.boundDevices,
    compatIoasId: listing.compatIoasId ?? 0,
    objects: listing.objects.map(objectToWire),
  };
}
