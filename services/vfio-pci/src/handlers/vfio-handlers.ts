import { vfio as wire } from '@p2p/proto';
import type { Authenticator } from '@p2p/auth';
import { type CallWithMetadata, type MessageLimit, unary, withActingPid } from '@p2p/server';
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
  /** Runs `fn` in the process a call acts in: the caller's own, proven by its credential (see actingPid). */
  const as = <T>(call: CallWithMetadata, pid: number, what: string, fn: (pid: number) => T | Promise<T>): T | Promise<T> => withActingPid(auth, call, pid, what, fn);
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
    openDevice: unary((req: wire.OpenDeviceRequest, call) => as(call, req.pid, 'OpenDevice', async (pid) => ({ fd: await vfio.openDevice(pid, req.bdf) }))),
    getDeviceInfo: unary((req: wire.GetDeviceInfoRequest, call) => as(call, req.pid, 'GetDeviceInfo', (pid) => vfio.deviceInfo(pid, req.deviceFd))),
    getRegionInfo: unary((req: wire.GetRegionInfoRequest, call) =>
      as(call, req.pid, 'GetRegionInfo', async (pid) => {
        const info = await vfio.regionInfo(pid, req.deviceFd, req.index);
        return { ...info, sparseMmapAreas: info.sparseMmapAreas.map((a) => ({ offset: a.offset, size: a.size })) };
      }),
    ),
    regionRead: unary((req: wire.RegionReadRequest, call) =>
      as(call, req.pid, 'RegionRead', async (pid) => {
        limit.checkAnswer(req.count, 'RegionRead', 'export the range as a dma-buf (VFIO_DEVICE_FEATURE_DMA_BUF) and MmapFd it, or read it in pieces');
        const data = await vfio.regionRead(pid, req.deviceFd, req.index, req.offset, req.count);
        // Wrapped, not copied: encoding the answer copies the bytes anyway.
        return { data: Buffer.from(data.buffer, data.byteOffset, data.byteLength) };
      }),
    ),
    regionWrite: unary((req: wire.RegionWriteRequest, call) =>
      as(call, req.pid, 'RegionWrite', async (pid) => ({ written: await vfio.regionWrite(pid, req.deviceFd, req.index, req.offset, req.data) })),
    ),
    reset: unary((req: wire.ResetRequest, call) =>
      as(call, req.pid, 'Reset', async (pid) => {
        await vfio.reset(pid, req.deviceFd);
        return {};
      }),
    ),
    hotReset: unary((req: wire.HotResetRequest, call) =>
      as(call, req.pid, 'HotReset', async (pid) => {
        await vfio.hotReset(pid, req.deviceFd, req.deviceFds);
        return {};
      }),
    ),
    deviceFeature: unary((req: wire.DeviceFeatureRequest, call) => as(call, req.pid, 'DeviceFeature', (pid) => vfio.deviceFeature(pid, req.deviceFd, featureFromWire(req)))),
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
  return { ...(layout ? { dmaBufLayout: layout } : {}), allowPin: variants.allowPin, cpuMmap: variants.cpuMmap, dmaBufExport: !variants.noDmaBufExport };
}

function variantsToWire(variants: VfioPciVariants): wire.Variants {
  return {
    dmaBufLayout: variants.dmaBufLayout === 'single' ? wire.DmaBufLayout.DMA_BUF_LAYOUT_SINGLE : wire.DmaBufLayout.DMA_BUF_LAYOUT_RANGES,
    allowPin: variants.allowPin,
    cpuMmap: variants.cpuMmap,
    noDmaBufExport: !variants.dmaBufExport,
  };
}
