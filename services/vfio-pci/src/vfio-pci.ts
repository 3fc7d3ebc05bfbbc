import { FdCache } from '@p2p/dmabuf-client';
import { errno, type ErrnoName } from '@p2p/errno';
import { canonicalBdf, busOf } from './bdf';
import { probeConfigLayout } from './core/config-layout';
import { deviceFeature } from './core/device-features';
import { resetDevice } from './core/device-reset';
import { hotResetDevSet } from './core/hot-reset';
import { deviceInfo, regionInfo, type DeviceInfo, type RegionInfo } from './core/region-info';
import { regionRead, regionWrite } from './core/region-rw';
import { VfioPciCore, type CoreContext } from './core/vfio-pci-core';
import { encodeDmaBufFeature, type DmaBufFeature, type DmaRange } from './dma-buf/dma-buf-feature';
import {
  attachDmaBuf,
  cpuMapDmaBuf,
  fenceDmaBuf,
  mapDmaBuf,
  pinDmaBuf,
  unpinDmaBuf,
  type DmaBufExtent,
} from './dma-buf/exporter-ops';
import type { RevokeListener } from './dma-buf/revoke-trigger';
import type { VfioDmaBuf } from './dma-buf/vfio-dma-buf';
import { parseFeatureCall } from './feature/device-feature';
import type { DeviceFile, OpenFile } from './iommufd/files';
import { type AttachPtCmd, type BindIommufdCmd, Iommufd } from './iommufd/iommufd';
import type { IommufdPorts } from './iommufd/iommufd-ctx';
import type { DmaBufPort, ResolvedFile } from './ports/dma-buf-port';
import type { PciPort } from './ports/pci-port';
import { O_RDWR } from './uapi/fcntl';
import { VFIO_DEVICE_FEATURE_MINSZ } from './uapi/vfio';
import { DEFAULT_VARIANTS, type VfioPciVariants } from './variants';

export interface VfioPciOptions {
  /** The owner name the registry knows this service by (ResolveFd's owner); default 'vfio-pci'. */
  readonly ownerName?: string;
  /**
   * Tags every file handle of this driver instance. A restarted vfio-pci gets
   * a new tag, so an fd left over from an earlier instance never names a
   * device this one opened (its handle matches nothing: ENOTTY).
   */
  readonly instance?: string;
  /** The service-wide variants; each bind may override them. */
  readonly variants?: Partial<VfioPciVariants>;
}

/** The argument after struct vfio_device_feature: raw bytes, or a DMA_BUF request encoded to the device's layout. */
export type FeaturePayload =
  | { readonly kind: 'raw'; readonly data: Uint8Array }
  | { readonly kind: 'dma-buf'; readonly feature: DmaBufFeature };

/** VFIO_DEVICE_FEATURE. */
export interface DeviceFeatureRequest {
  /** The feature number | GET | SET | PROBE. */
  readonly flags: number;
  /** argsz as the ioctl carries it, header included; default 8 + the payload's length. */
  readonly argsz?: number;
  readonly payload?: FeaturePayload;
}

/** No fd was created (PROBE, SET, features other than a DMA_BUF GET). */
export const NO_FD = -1;

export interface DeviceFeatureResult {
  /** The new dma-buf fd of a DMA_BUF GET; NO_FD otherwise. */
  readonly fd: number;
}

export interface DeviceListing {
  readonly bdf: string;
  readonly variants: VfioPciVariants;
  readonly openCount: number;
  readonly ownerPid: number | undefined;
  /** False once the function went away (unplug) while open. */
  readonly registered: boolean;
  readonly lowPower: boolean;
  /** The fd given with LOW_POWER_ENTRY_WITH_WAKEUP while in low power. */
  readonly wakeupFd: number | undefined;
  /** Buffers on the device's list. */
  readonly dmaBufs: number;
}

export interface DmaBufListing {
  readonly handle: string;
  readonly bufferId: bigint | undefined;
  readonly providerBdf: string;
  readonly regionIndex: number;
  readonly size: bigint;
  readonly ranges: readonly DmaRange[];
  readonly revoked: boolean;
  /** Revoked for good: its device was closed or went away. */
  readonly forgotten: boolean;
  readonly pins: number;
}

const DEVICE_HANDLE = 'vfio-device';
const DMA_BUF_HANDLE = 'vfio-dmabuf';

/**
 * vfio-pci: functions bound to the driver (driver_override + bind), their
 * device files, the device ioctls and region access, and the exporter side of
 * the dma-bufs they export. Every failure is an ErrnoError and leaves the
 * state as it was. Device files and dma-bufs are files in the registry: an ioctl
 * names its device by (pid, fd), resolved through the DmaBufPort once and
 * then remembered until the registry says the fd was closed (fdClosed) or
 * the file released, and the registry calls back into the exporter ops
 * (attach, pin, unpin, map, cpuMap, fence, release) with the handle the file
 * was made with. The DMA mapping uAPI (iommufd, and the type1 container on
 * top of it) is `iommufd`; its files are this driver's files too.
 */
export class VfioPci {
  readonly ownerName: string;
  readonly defaults: VfioPciVariants;
  readonly #pci: PciPort;
  readonly #dmaBufs: DmaBufPort;
  readonly #context: CoreContext;
  /** Bound functions by BDF. */
  readonly #devices = new Map<string, VfioPciCore>();
  readonly #binding = new Set<string>();
  /** Device files by handle. */
  readonly #files = new Map<string, VfioPciCore>();
  /** Which device file each (pid, fd) names, as the registry resolved it. */
  readonly #fds = new FdCache();
  /** dma-bufs by handle, from export to release. */
  readonly #buffers = new Map<string, VfioDmaBuf>();
  readonly #revokeListeners = new Set<RevokeListener>();
  #nextHandle = 1;
  readonly #instance: string;
  /** /dev/iommu and /dev/vfio/vfio: the DMA mapping uAPI. */
  readonly iommufd: Iommufd;

  constructor(pci: PciPort, dmaBufs: DmaBufPort, iommufd: IommufdPorts, options: VfioPciOptions = {}) {
    this.ownerName = options.ownerName ?? 'vfio-pci';
    this.#instance = options.instance ?? '';
    this.iommufd = new Iommufd(
      iommufd,
      {
        createFile: async (pid, handle) => (await dmaBufs.createFile(pid, handle, O_RDWR)).fd,
        fileAt: (pid, fd) => this.#fileAt(pid, fd),
      },
      this.#instance,
    );
    this.defaults = { ...DEFAULT_VARIANTS, ...options.variants };
    this.#pci = pci;
    this.#dmaBufs = dmaBufs;
    this.#context = {
      pci,
      dmaBufs,
      directory: {
        handleFor: (bdf) => this.#handle(DMA_BUF_HANDLE, bdf),
        add: (buffer) => this.#buffers.set(buffer.handle, buffer),
        remove: (buffer) => this.#buffers.delete(buffer.handle),
      },
      revoked: (revoke) => {
        for (const listener of this.#revokeListeners) listener(revoke);
      },
    };
  }

  /** Every revoke that revoked any buffer from now on, with its trigger, synchronously. Returns the unsubscribe. */
  onRevoke(listener: RevokeListener): () => void {
    this.#revokeListeners.add(listener);
    return () => {
      this.#revokeListeners.delete(listener);
    };
  }

  /* ---- driver binding ---- */

  /**
   * Binds a function (vfio_pci_probe()): ENODEV if it does not exist or is
   * unplugged, EBUSY if already bound, EINVAL if not a normal (type 0)
   * function. `variants` override the service's for this device.
   */
  async bind(bdf: string, variants: Partial<VfioPciVariants> = {}): Promise<void> {
    const canonical = canonicalBdf(bdf);
    if (this.#devices.has(canonical) || this.#binding.has(canonical)) {
      throw errno('EBUSY', `${canonical} is already bound to vfio-pci`);
    }
    this.#binding.add(canonical);
    try {
      const info = await this.#pci.functionInfo(canonical);
      if (!info.present) {
        throw errno('ENODEV', `${canonical} has been hot-unplugged`);
      }
      const layout = await probeConfigLayout(this.#pci, canonical);
      const core = new VfioPciCore(canonical, info.bars, layout, { ...this.defaults, ...variants }, this.#context);
      this.#devices.set(canonical, core);
    } finally {
      this.#binding.delete(canonical);
    }
  }

  /** Unbinds a function: ENODEV if not bound, EBUSY while its device is open. */
  async unbind(bdf: string): Promise<void> {
    const core = this.#bound(bdf);
    await core.unbind();
    this.#devices.delete(core.bdf);
  }

  /**
   * The function was surprise-removed: its buffers are revoked for good and
   * the device can no longer be opened or export; an open device stays
   * until its last close, then it is gone. A no-op for an unbound function.
   */
  async unplugged(bdf: string): Promise<void> {
    const core = this.#devices.get(canonicalBdf(bdf));
    if (core === undefined) return;
    await core.goAway();
    this.#dropIfGone(core);
  }

  /* ---- device files ---- */

  /**
   * Opens the device for `pid` and returns the fd of the new device file in
   * its table. ENODEV if not bound (or going away), EBUSY if another process
   * has it open.
   */
  async openDevice(pid: number, bdf: string): Promise<number> {
    const core = this.#bound(bdf);
    const handle = this.#handle(DEVICE_HANDLE, core.bdf);
    this.#files.set(handle, core);
    try {
      const created = await core.open(pid, () => this.#dmaBufs.createFile(pid, handle, O_RDWR));
      return created.fd;
    } catch (error) {
      this.#files.delete(handle);
      throw error;
    }
  }

  /** VFIO_DEVICE_GET_INFO. */
  async deviceInfo(pid: number, fd: number): Promise<DeviceInfo> {
    await this.#deviceAt(pid, fd);
    return deviceInfo();
  }

  /** VFIO_DEVICE_GET_REGION_INFO. */
  async regionInfo(pid: number, fd: number, index: number): Promise<RegionInfo> {
    const core = await this.#deviceAt(pid, fd);
    return regionInfo(core.bars, index);
  }

  /** pread() on the device fd at VFIO_PCI_INDEX_TO_OFFSET(index) + offset. */
  async regionRead(pid: number, fd: number, index: number, offset: bigint, count: number): Promise<Uint8Array> {
    return regionRead(await this.#deviceAt(pid, fd), index, offset, count);
  }

  /** pwrite() on the device fd; returns the bytes written. */
  async regionWrite(pid: number, fd: number, index: number, offset: bigint, data: Uint8Array): Promise<number> {
    return regionWrite(await this.#deviceAt(pid, fd), index, offset, data);
  }

  /** VFIO_DEVICE_RESET. */
  async reset(pid: number, fd: number): Promise<void> {
    await resetDevice(await this.#deviceAt(pid, fd));
  }

  /**
   * VFIO_DEVICE_PCI_HOT_RESET: a secondary bus reset of the device's bus.
   * `deviceFds` are the caller's files of the set's other open devices, its
   * proof of owning them (EINVAL for an fd that is not a vfio device).
   */
  async hotReset(pid: number, fd: number, deviceFds: readonly number[]): Promise<void> {
    const core = await this.#deviceAt(pid, fd);
    const named = new Set<VfioPciCore>([core]);
    for (const other of deviceFds) named.add(await this.#deviceAt(pid, other, 'EINVAL'));
    const bus = busOf(core.bdf);
    const set = [...this.#devices.values()].filter((candidate) => busOf(candidate.bdf) === bus).sort((a, b) => a.bdf.localeCompare(b.bdf));
    await hotResetDevSet(this.#pci, set, named);
  }

  /** VFIO_DEVICE_FEATURE. */
  async deviceFeature(pid: number, fd: number, request: DeviceFeatureRequest): Promise<DeviceFeatureResult> {
    const core = await this.#deviceAt(pid, fd);
    const payload = request.payload;
    const data =
      payload === undefined
        ? new Uint8Array(0)
        : payload.kind === 'raw'
          ? payload.data
          : encodeDmaBufFeature(payload.feature, core.variants.dmaBufLayout);
    const call = parseFeatureCall(request.flags, request.argsz ?? VFIO_DEVICE_FEATURE_MINSZ + data.length, data);
    return { fd: (await deviceFeature(core, pid, call)) ?? NO_FD };
  }

  /**
   * VFIO_DEVICE_BIND_IOMMUFD on a device file: returns out_devid. A legacy
   * device file (OpenDevice) works without it; binding is what the DMA
   * mapping ioctls need (see Iommufd).
   */
  async bindIommufd(pid: number, fd: number, cmd: BindIommufdCmd): Promise<number> {
    return this.iommufd.bindIommufd(pid, await this.#deviceFileAt(pid, fd), cmd);
  }

  /** VFIO_DEVICE_ATTACH_IOMMUFD_PT: returns the HWPT id. */
  async attachIommufdPt(pid: number, fd: number, cmd: AttachPtCmd): Promise<number> {
    return this.iommufd.attachIommufdPt(await this.#deviceFileAt(pid, fd), cmd);
  }

  /** VFIO_DEVICE_DETACH_IOMMUFD_PT. */
  async detachIommufdPt(pid: number, fd: number, flags: number): Promise<void> {
    await this.iommufd.detachIommufdPt(await this.#deviceFileAt(pid, fd), flags);
  }

  /** VFIO_GROUP_SET_CONTAINER for the group of the device at `fd` (see Iommufd.setContainer). */
  async setContainer(pid: number, fd: number, containerFd: number): Promise<void> {
    await this.iommufd.setContainer(pid, await this.#deviceFileAt(pid, fd), containerFd);
  }

  /* ---- the registry's calls into the owner ---- */

  /** dma_buf_ops.attach. */
  attach(handle: string, peer2peer: boolean): void {
    attachDmaBuf(this.#buffer(handle), peer2peer);
  }

  /** dma_buf_ops.pin. */
  pin(handle: string): void {
    pinDmaBuf(this.#buffer(handle));
  }

  /** dma_buf_ops.unpin. */
  unpin(handle: string): void {
    unpinDmaBuf(this.#buffer(handle));
  }

  /** dma_buf_ops.map_dma_buf: the whole buffer's extents, in order. */
  async map(handle: string): Promise<DmaBufExtent[]> {
    return mapDmaBuf(this.#buffer(handle), this.#pci);
  }

  /** CPU access (the cpu-mmap variant): the same extents. */
  async cpuMap(handle: string): Promise<DmaBufExtent[]> {
    return cpuMapDmaBuf(this.#buffer(handle), this.#pci);
  }

  /** An importer of the buffer was fenced. */
  async fence(handle: string): Promise<void> {
    await fenceDmaBuf(this.#buffer(handle), this.#pci);
  }

  /**
   * The last reference to one of this owner's files is gone: a device file
   * (vfio_device_fops_release(); the last one closes the device, revoking its
   * buffers for good, then its iommufd binding goes), an iommufd (its objects
   * go, now or once no device is bound to it) or a dma-buf
   * (vfio_pci_dma_buf_release(): off its device's list). ENOENT for a handle
   * this owner does not know.
   */
  async release(handle: string): Promise<void> {
    const core = this.#files.get(handle);
    if (core !== undefined) {
      this.#files.delete(handle);
      this.#fds.released(handle);
      // Each step runs whatever the one before threw: a device gone from the
      // platform still leaves vfio-pci at its last close, even when its
      // iommufd teardown could not reach the IOMMU.
      try {
        await core.close();
      } finally {
        try {
          await this.iommufd.deviceFileReleased(handle);
        } finally {
          this.#dropIfGone(core);
        }
      }
      return;
    }
    if (this.iommufd.owns(handle)) {
      this.#fds.released(handle);
      await this.iommufd.release(handle);
      return;
    }
    const buffer = this.#buffer(handle);
    this.#fds.released(handle);
    buffer.release();
    this.#buffers.delete(handle);
  }

  /**
   * `pid` closed `fd`, which named one of this owner's files that lives on
   * elsewhere: forget what the fd named before the close returns, so the
   * number never reaches a device once it names another file.
   */
  fdClosed(pid: number, fd: number): void {
    this.#fds.fdClosed(pid, fd);
  }

  /* ---- introspection ---- */

  devices(): DeviceListing[] {
    return [...this.#devices.values()].map((core) => ({
      bdf: core.bdf,
      variants: core.variants,
      openCount: core.openCount,
      ownerPid: core.ownerPid,
      registered: core.registered,
      lowPower: core.lowPower.engaged,
      wakeupFd: core.lowPower.wakeupFd,
      dmaBufs: core.dmaBufs.size,
    }));
  }

  buffers(): DmaBufListing[] {
    return [...this.#buffers.values()].map((buffer) => ({
      handle: buffer.handle,
      bufferId: buffer.bufferId,
      providerBdf: buffer.providerBdf,
      regionIndex: buffer.bar.index,
      size: buffer.size,
      ranges: buffer.phys.map((range) => ({ offset: range.offset, length: range.len })),
      revoked: buffer.revoked,
      forgotten: buffer.forgotten,
      pins: buffer.pins,
    }));
  }

  /* ---- internals ---- */

  #handle(kind: string, bdf: string): string {
    return `${kind}:${this.#instance}${bdf}#${this.#nextHandle++}`;
  }

  #bound(bdf: string): VfioPciCore {
    const canonical = canonicalBdf(bdf);
    const core = this.#devices.get(canonical);
    if (core === undefined) {
      throw errno('ENODEV', `${canonical} is not bound to vfio-pci`);
    }
    return core;
  }

  /** A device that went away leaves once nobody has it open. */
  #dropIfGone(core: VfioPciCore): void {
    if (!core.registered && core.openCount === 0 && this.#devices.get(core.bdf) === core) {
      this.#devices.delete(core.bdf);
    }
  }

  /**
   * The device behind (pid, fd): EBADF from the registry if pid does not
   * hold fd, `notDevice` if it is not a vfio device file.
   */
  async #deviceAt(pid: number, fd: number, notDevice: ErrnoName = 'ENOTTY'): Promise<VfioPciCore> {
    return (await this.#deviceFileAt(pid, fd, notDevice)).device;
  }

  async #deviceFileAt(pid: number, fd: number, notDevice: ErrnoName = 'ENOTTY'): Promise<DeviceFile & { readonly device: VfioPciCore }> {
    const file = await this.#fileAt(pid, fd);
    const core = file.kind === 'vfio-device' ? this.#files.get(file.file.handle) : undefined;
    if (file.kind !== 'vfio-device' || core === undefined) {
      throw errno(notDevice, `fd ${fd} of pid ${pid} is not a vfio device file`);
    }
    return { handle: file.file.handle, device: core };
  }

  /**
   * What (pid, fd) names: EBADF from the registry if pid does not hold fd.
   * Only the first call on an fd asks the registry; the answer for one of
   * this driver's live files (a device, an iommufd, a dma-buf) is
   * remembered until the fd is closed or the file released.
   */
  async #fileAt(pid: number, fd: number): Promise<OpenFile> {
    const remembered = this.#fds.get(pid, fd);
    const known = remembered === undefined ? undefined : this.#ownFile(remembered);
    if (known !== undefined) return known;
    const ours = (file: ResolvedFile): boolean => file.owner === this.ownerName && this.#ownFile(file.handle) !== undefined;
    const file = await this.#fds.resolve(pid, fd, () => this.#dmaBufs.resolveFd(pid, fd), ours);
    if (file.owner === this.ownerName) {
      const own = this.#ownFile(file.handle);
      if (own !== undefined) return own;
    }
    if (file.kind !== 'dma-buf') return { kind: 'file' };
    return file.owner === this.ownerName ? { kind: 'vfio-dma-buf', buffer: undefined } : { kind: 'dma-buf' };
  }

  #ownFile(handle: string): OpenFile | undefined {
    const core = this.#files.get(handle);
    if (core !== undefined) return { kind: 'vfio-device', file: { handle, device: core } };
    if (this.iommufd.owns(handle)) return { kind: 'iommufd', handle };
    const buffer = this.#buffers.get(handle);
    return buffer === undefined ? undefined : { kind: 'vfio-dma-buf', buffer };
  }

  #buffer(handle: string): VfioDmaBuf {
    const buffer = this.#buffers.get(handle);
    if (buffer === undefined) {
      throw errno('ENOENT', `${this.ownerName} has no file ${handle}`);
    }
    return buffer;
  }
}
