import { vfio as wire } from '@p2p/proto';
import type { Authenticator } from '@p2p/auth';
import { actingPidOf, type CallWithMetadata, type MessageLimit, unary } from '@p2p/server';
import type { DeviceFeatureRequest } from '../vfio-pci';
import type { VfioPci } from '../vfio-pci';
import type { VfioPciVariants } from '../variants';

/**
 * VfioPciService: decode, call the driver model, encode. Every rule (and
 * every errno) lives in VfioPci, but one: `limit` is the server's message
 * limit, and a RegionRead whose answer cannot fit it is refused before the
 * device is touched.
 */
export function vfioHandlers(vfio: VfioPci, limit: MessageLimit, auth: Authenticator): wire.VfioPciServiceServer {
  /** The process a call acts in: the caller's own, proven by its credential (see actingPid). */
  const as = (call: CallWithMetadata, pid: number, what: string): number | Promise<number> => actingPidOf(auth, call, pid, what);
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
    openDevice: unary(async (req: wire.OpenDeviceRequest, call) => ({ fd: await vfio.openDevice(await as(call, req.pid, 'OpenDevice'), req.bdf) })),
    getDeviceInfo: unary(async (req: wire.GetDeviceInfoRequest, call) => vfio.deviceInfo(await as(call, req.pid, 'GetDeviceInfo'), req.deviceFd)),
    getRegionInfo: unary(async (req: wire.GetRegionInfoRequest, call) => {
      const info = await vfio.regionInfo(await as(call, req.pid, 'GetRegionInfo'), req.deviceFd, req.index);
      return { ...info, sparseMmapAreas: info.sparseMmapAreas.map((a) => ({ offset: a.offset, size: a.size })) };
    }),
    regionRead: unary(async (req: wire.RegionReadRequest, call) => {
      const pid = await as(call, req.pid, 'RegionRead');
      limit.checkAnswer(req.count, 'RegionRead', 'export the range as a dma-buf (VFIO_DEVICE_FEATURE_DMA_BUF) and MmapFd it, or read it in pieces');
      const data = await vfio.regionRead(pid, req.deviceFd, req.index, req.offset, req.count);
      // Wrapped, not copied: encoding the answer copies the bytes anyway.
      return { data: Buffer.from(data.buffer, data.byteOffset, data.byteLength) };
    }),
    regionWrite: unary(async (req: wire.RegionWriteRequest, call) => ({ written: await vfio.regionWrite(await as(call, req.pid, 'RegionWrite'), req.deviceFd, req.index, req.offset, req.data) })),
    reset: unary(async (req: wire.ResetRequest, call) => {
      await vfio.reset(await as(call, req.pid, 'Reset'), req.deviceFd);
      return {};
    }),
    hotReset: unary(async (req: wire.HotResetRequest, call) => {
      await vfio.hotReset(await as(call, req.pid, 'HotReset'), req.deviceFd, req.deviceFds);
      return {};
    }),
    deviceFeature: unary(async (req: wire.DeviceFeatureRequest, call) => vfio.deviceFeature(await as(call, req.pid, 'DeviceFeature'), req.deviceFd, featureFromWire(req))),
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
