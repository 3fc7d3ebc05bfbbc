import { vfio as wire } from '@p2p/proto';
import { unary } from '@p2p/server';
import type { DeviceFeatureRequest } from '../vfio-pci';
import type { VfioPci } from '../vfio-pci';
import type { VfioPciVariants } from '../variants';

/**
 * VfioPciService: decode, call the driver model, encode. Every rule (and
 * every errno) lives in VfioPci.
 */
export function vfioHandlers(vfio: VfioPci): wire.VfioPciServiceServer {
  return {
    bind: unary(async (req: wire.BindRequest) => {
      await vfio.bind(req.bdf, variantsFromWire(req.variants));
      return {};
    }),
    unbind: unary(async (req: wire.UnbindRequest) => {
      await vfio.unbind(req.bdf);
      return {};
    }),
    listDevices: unary(() => ({
      devices: vfio.devices().map((d) => ({
        bdf: d.bdf,
        variants: variantsToWire(d.variants),
        openCount: d.openCount,
        ownerPid: d.ownerPid ?? 0,
        lowPower: d.lowPower,
        dmaBufs: d.dmaBufs,
      })),
      dmaBufs: vfio.buffers().map((b) => ({
        handle: b.handle,
        bufferId: b.bufferId ?? 0n,
        providerBdf: b.providerBdf,
        regionIndex: b.regionIndex,
        size: b.size,
        ranges: b.ranges.map((r) => ({ offset: r.offset, length: r.length })),
        revoked: b.revoked,
        forgotten: b.forgotten,
        pins: b.pins,
      })),
    })),
    openDevice: unary(async (req: wire.OpenDeviceRequest) => ({ fd: await vfio.openDevice(req.pid, req.bdf) })),
    getDeviceInfo: unary((req: wire.GetDeviceInfoRequest) => vfio.deviceInfo(req.pid, req.deviceFd)),
    getRegionInfo: unary(async (req: wire.GetRegionInfoRequest) => {
      const info = await vfio.regionInfo(req.pid, req.deviceFd, req.index);
      return { ...info, sparseMmapAreas: info.sparseMmapAreas.map((a) => ({ offset: a.offset, size: a.size })) };
    }),
    regionRead: unary(async (req: wire.RegionReadRequest) => ({
      data: Buffer.from(await vfio.regionRead(req.pid, req.deviceFd, req.index, req.offset, req.count)),
    })),
    regionWrite: unary(async (req: wire.RegionWriteRequest) => ({ written: await vfio.regionWrite(req.pid, req.deviceFd, req.index, req.offset, req.data) })),
    reset: unary(async (req: wire.ResetRequest) => {
      await vfio.reset(req.pid, req.deviceFd);
      return {};
    }),
    hotReset: unary(async (req: wire.HotResetRequest) => {
      await vfio.hotReset(req.pid, req.deviceFd, req.deviceFds);
      return {};
    }),
    deviceFeature: unary(async (req: wire.DeviceFeatureRequest) => vfio.deviceFeature(req.pid, req.deviceFd, featureFromWire(req))),
  };
}

function featureFromWire(req: wire.DeviceFeatureRequest): DeviceFeatureRequest {
  const argsz = req.argsz === 0 ? undefined : req.argsz;
  const payload = req.payload;
  if (payload?.$case === 'raw') return { flags: req.flags, argsz, payload: { kind: 'raw', data: payload.value } };
  if (payload?.$case === 'dmaBuf') {
    const f = payload.value;
    return {
      flags: req.flags,
      argsz,
      payload: {
        kind: 'dma-buf',
        feature: { regionIndex: f.regionIndex, openFlags: f.openFlags, flags: f.flags, ranges: f.dmaRanges, nrRanges: f.nrRanges },
      },
    };
  }
  return { flags: req.flags, argsz };
}

function variantsFromWire(variants: wire.Variants | undefined): Partial<VfioPciVariants> {
  if (!variants) return {};
  const layout =
    variants.dmaBufLayout === wire.DmaBufLayout.DMA_BUF_LAYOUT_SINGLE ? 'single' : variants.dmaBufLayout === wire.DmaBufLayout.DMA_BUF_LAYOUT_RANGES ? 'ranges' : undefined;
  return { ...(layout ? { dmaBufLayout: layout } : {}), allowPin: variants.allowPin, cpuMmap: variants.cpuMmap };
}

function variantsToWire(variants: VfioPciVariants): wire.Variants {
  return {
    dmaBufLayout: variants.dmaBufLayout === 'single' ? wire.DmaBufLayout.DMA_BUF_LAYOUT_SINGLE : wire.DmaBufLayout.DMA_BUF_LAYOUT_RANGES,
    allowPin: variants.allowPin,
    cpuMmap: variants.cpuMmap,
  };
}
