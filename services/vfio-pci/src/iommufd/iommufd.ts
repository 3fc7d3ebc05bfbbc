import { errno } from '@p2p/errno';
import type { IovaRange } from './iova-range';
import { attachDevice, bindDevice, detachDevice, unbindDevice } from './device';
import type { DeviceFile, IommufdFiles, OpenFile } from './files';
import {
  type IoasCopyCmd,
  type IoasMapCmd,
  type IoasMapFileCmd,
  type IovaRanges,
  ioasAlloc,
  ioasAllowIovas,
  ioasCopy,
  ioasIovaRanges,
  ioasMap,
  ioasMapFile,
  ioasUnmap,
  vfioIoas,
} from './ioas-ioctls';
import { IommufdCtx, type IommufdNode, type IommufdPorts } from './iommufd-ctx';
import { Mutex } from './mutex';
import type { IommufdDevice } from './objects';
import { type IommuInfo, type MapDmaCmd, type UnmapDmaCmd, vfioCheckExtension, vfioGetApiVersion, vfioIommuGetInfo, vfioIommuMapDma, vfioIommuUnmapDma, vfioSetIommu } from './vfio-compat';
import { VFIO_DEVICE_ATTACH_PASID, VFIO_DEVICE_BIND_FLAG_TOKEN, VFIO_DEVICE_DETACH_PASID } from '../uapi/vfio';
import { hex } from '../uapi/u64';

/** VFIO_DEVICE_BIND_IOMMUFD. */
export interface BindIommufdCmd {
  readonly flags: number;
  /** The iommufd's fd in the caller's table. */
  readonly iommufd: number;
}

/** VFIO_DEVICE_ATTACH_IOMMUFD_PT. */
export interface AttachPtCmd {
  readonly flags: number;
  readonly ptId: number;
  readonly pasid: number;
}

/** One object of a context, for listings. */
export type IommufdObjectListing =
  | { readonly id: number; readonly type: 'ioas'; readonly areas: readonly AreaListing[]; readonly domains: readonly number[] }
  | { readonly id: number; readonly type: 'hwpt-paging'; readonly ioasId: number; readonly domainId: number; readonly bdfs: readonly string[] }
  | { readonly id: number; readonly type: 'device'; readonly bdf: string; readonly hwptId: number | undefined };

export interface AreaListing {
  readonly iova: bigint;
  readonly length: bigint;
  readonly prot: number;
  readonly kind: 'user' | 'file' | 'dmabuf';
  /** A dma-buf area whose buffer was revoked: mapped nowhere until userspace maps it afresh. */
  readonly revoked: boolean;
}

export interface IommufdListing {
  readonly handle: string;
  readonly pid: number;
  readonly node: IommufdNode;
  readonly fileOpen: boolean;
  readonly boundDevices: number;
  readonly compatIoasId: number | undefined;
  readonly objects: readonly IommufdObjectListing[];
}

/** A device file's iommufd binding: through VFIO_DEVICE_BIND_IOMMUFD (cdev) or its group's container (group). */
interface DeviceBinding {
  readonly handle: string;
  readonly bdf: string;
  readonly via: 'cdev' | 'group';
  readonly ictx: IommufdCtx;
  readonly idev: IommufdDevice;
}

const IOMMUFD_HANDLE = 'iommufd';

/**
 * What an fd names, asked of the registry before any lock is taken (the
 * registry may be waiting on this driver to release a file meanwhile), and
 * looked at where the kernel's fdget() would be: the answer, or the errno.
 */
async function settled<T>(lookup: Promise<T>): Promise<() => T> {
  try {
    const value = await lookup;
    return () => value;
  } catch (error) {
    return () => {
      throw error;
    };
  }
}

/**
 * iommufd as vfio-pci serves it: /dev/iommu and /dev/vfio/vfio files in the
 * registry, the ioctls on them (each on its context, one at a time), and
 * the vfio device side (vfio/device_cdev.c, vfio/group.c).
 *
 * Device files opened with OpenDevice are the model's legacy files: they
 * reach MMIO, config space and features without any IOMMU set-up (as
 * before iommufd existed here), and bus-master DMA is blocked until their
 * function is attached to a domain. The cdev rule "until bind, every other
 * ioctl fails EINVAL" applies to the DMA mapping ioctls only:
 * VFIO_DEVICE_ATTACH_IOMMUFD_PT and _DETACH_ need VFIO_DEVICE_BIND_IOMMUFD
 * first. A function's DMA belongs to one context at a time: bound through
 * one of its device files (cdev), or joined to a container through its
 * group (SetContainer; one group per function on this platform), never both.
 */
export class Iommufd {
  readonly #contexts = new Map<string, IommufdCtx>();
  /** dev_set->lock: binds, attaches, detaches and unbinds, one at a time. */
  readonly #devSet = new Mutex();
  /** By device file handle. */
  readonly #byFile = new Map<string, DeviceBinding>();
  /** By function: the one binding it may have. */
  readonly #byDevice = new Map<string, DeviceBinding>();
  #nextHandle = 1;

  constructor(
    private readonly ports: IommufdPorts,
    private readonly files: IommufdFiles,
    /** Tags handles, as vfio-pci's own (see VfioPciOptions.instance). */
    private readonly instance: string = '',
  ) {}

  /* ---- files ---- */

  /** open("/dev/iommu") or open("/dev/vfio/vfio"): a new context as a file in `pid`'s table; its fd. */
  async open(pid: number, node: IommufdNode): Promise<number> {
    const handle = `${IOMMUFD_HANDLE}:${this.instance}${node}#${this.#nextHandle++}`;
    const ictx = new IommufdCtx(handle, pid, node, this.ports);
    this.#contexts.set(handle, ictx);
    try {
      return await this.files.createFile(pid, handle);
    } catch (error) {
      this.#contexts.delete(handle);
      throw error;
    }
  }

  /** Whether `handle` is one of this driver's contexts. */
  owns(handle: string): boolean {
    return this.#contexts.has(handle);
  }

  /**
   * iommufd_fops_release(): the context's file is gone. Its objects are
   * destroyed now, or when the last device bound to it is unbound (a bound
   * device holds the file in the kernel).
   */
  async release(handle: string): Promise<void> {
    const ictx = this.#contexts.get(handle);
    if (ictx === undefined) throw errno('ENOENT', `no iommufd ${handle}`);
    await ictx.lock.run(async () => {
      try {
        await ictx.fileReleased();
      } finally {
        if (ictx.dead) this.#contexts.delete(handle);
      }
    });
  }

  /* ---- /dev/iommu ioctls ---- */

  destroy(pid: number, fd: number, id: number): Promise<void> {
    return this.#ioctl(pid, fd, (ictx) => ictx.destroy(id));
  }

  ioasAlloc(pid: number, fd: number, flags: number): Promise<number> {
    return this.#ioctl(pid, fd, async (ictx) => ioasAlloc(ictx, flags));
  }

  ioasIovaRanges(pid: number, fd: number, cmd: { ioasId: number; numIovas: number; reserved: number }): Promise<IovaRanges> {
    return this.#ioctl(pid, fd, async (ictx) => ioasIovaRanges(ictx, cmd));
  }

  ioasAllowIovas(pid: number, fd: number, cmd: { ioasId: number; reserved: number; ranges: readonly IovaRange[] }): Promise<void> {
    return this.#ioctl(pid, fd, async (ictx) => ioasAllowIovas(ictx, cmd));
  }

  ioasMap(pid: number, fd: number, cmd: IoasMapCmd): Promise<bigint> {
    return this.#ioctl(pid, fd, (ictx) => ioasMap(ictx, pid, cmd));
  }

  async ioasMapFile(pid: number, fd: number, cmd: IoasMapFileCmd): Promise<bigint> {
    const mapped = await settled(cmd.fd < 0 ? Promise.reject(errno('EBADF', `fd ${cmd.fd} is not open`)) : this.files.fileAt(pid, cmd.fd));
    return this.#ioctl(pid, fd, (ictx) => ioasMapFile(ictx, cmd, mapped));
  }

  ioasUnmap(pid: number, fd: number, cmd: { ioasId: number; iova: bigint; length: bigint }): Promise<bigint> {
    return this.#ioctl(pid, fd, (ictx) => ioasUnmap(ictx, cmd));
  }

  ioasCopy(pid: number, fd: number, cmd: IoasCopyCmd): Promise<bigint> {
    return this.#ioctl(pid, fd, (ictx) => ioasCopy(ictx, cmd));
  }

  vfioIoas(pid: number, fd: number, cmd: { op: number; ioasId: number; reserved: number }): Promise<number> {
    return this.#ioctl(pid, fd, async (ictx) => vfioIoas(ictx, cmd));
  }

  /* ---- the type1 container ioctls (any iommufd fd takes them) ---- */

  vfioGetApiVersion(pid: number, fd: number): Promise<number> {
    return this.#ioctl(pid, fd, async () => vfioGetApiVersion());
  }

  vfioCheckExtension(pid: number, fd: number, extension: number): Promise<number> {
    return this.#ioctl(pid, fd, async (ictx) => vfioCheckExtension(ictx, extension));
  }

  vfioSetIommu(pid: number, fd: number, type: number): Promise<void> {
    return this.#ioctl(pid, fd, async (ictx) => vfioSetIommu(ictx, type));
  }

  vfioIommuGetInfo(pid: number, fd: number, argsz: number): Promise<IommuInfo> {
    return this.#ioctl(pid, fd, async (ictx) => vfioIommuGetInfo(ictx, argsz));
  }

  vfioIommuMapDma(pid: number, fd: number, cmd: MapDmaCmd): Promise<void> {
    return this.#ioctl(pid, fd, (ictx) => vfioIommuMapDma(ictx, pid, cmd));
  }

  vfioIommuUnmapDma(pid: number, fd: number, cmd: UnmapDmaCmd): Promise<bigint> {
    return this.#ioctl(pid, fd, (ictx) => vfioIommuUnmapDma(ictx, cmd));
  }

  /* ---- the vfio device side ---- */

  /**
   * VFIO_DEVICE_BIND_IOMMUFD (vfio_df_ioctl_bind_iommufd()), in its order:
   * a negative iommufd or unknown flags EINVAL; a file that joined a
   * container through its group EINVAL; the group in a container through
   * another file EBUSY (vfio_device_block_group()); bound already EINVAL;
   * the TOKEN flag EINVAL (no function here is an SR-IOV PF or VF); an fd
   * the caller does not hold EBADF, not an iommufd EBADFD; the device bound
   * through another file EINVAL (vfio_df_open()); the function gone
   * ENODEV; ENOMEM past the context's object limit. Returns the device
   * object's id (out_devid). Bind attaches nothing: DMA stays blocked.
   */
  async bindIommufd(pid: number, file: DeviceFile, cmd: BindIommufdCmd): Promise<number> {
    if (cmd.iommufd < 0 || (cmd.flags & ~VFIO_DEVICE_BIND_FLAG_TOKEN) !== 0) {
      throw errno('EINVAL', `iommufd ${cmd.iommufd} or flags ${hex(cmd.flags)}: a non-negative fd and only BIND_FLAG_TOKEN`);
    }
    const iommufdFile = await settled(this.files.fileAt(pid, cmd.iommufd));
    return this.#devSet.run(async () => {
      const own = this.#byFile.get(file.handle);
      if (own?.via === 'group') throw errno('EINVAL', `this device file joined a container through its group: it cannot bind an iommufd`);
      const holder = this.#byDevice.get(file.device.bdf);
      if (holder?.via === 'group') throw errno('EBUSY', `the group of ${file.device.bdf} is in a container`);
      if (own !== undefined) throw errno('EINVAL', 'this device file is bound to an iommufd already');
      if ((cmd.flags & VFIO_DEVICE_BIND_FLAG_TOKEN) !== 0) throw errno('EINVAL', `${file.device.bdf} is not an SR-IOV PF or VF: it takes no VF token`);
      const ictx = this.#contextIn(iommufdFile(), cmd.iommufd);
      if (this.#byDevice.has(file.device.bdf)) throw errno('EINVAL', `${file.device.bdf} is bound to an iommufd through another device file`);
      if (!file.device.registered) throw errno('ENODEV', `${file.device.bdf} has gone away`);
      const idev = await ictx.lock.run(async () => bindDevice(ictx, file.device.bdf));
      this.#remember({ handle: file.handle, bdf: file.device.bdf, via: 'cdev', ictx, idev });
      return idev.id;
    });
  }

  /**
   * VFIO_DEVICE_ATTACH_IOMMUFD_PT (vfio_df_ioctl_attach_pt()): a file not
   * bound EINVAL (the access_granted gate); a file that came through its
   * group ENOTTY (the ioctl is the driver's there, and vfio-pci has none);
   * unknown flags EINVAL; PASID EOPNOTSUPP (no PASID support here); then
   * the attach (ENOENT for an unknown id, EINVAL for another type, ...).
   * Attaching again replaces. Returns the HWPT id.
   */
  attachIommufdPt(file: DeviceFile, cmd: AttachPtCmd): Promise<number> {
    return this.#devSet.run(async () => {
      const binding = this.#cdevBinding(file);
      if ((cmd.flags & ~VFIO_DEVICE_ATTACH_PASID) !== 0) throw errno('EINVAL', `flags ${hex(cmd.flags)}: only ATTACH_PASID`);
      if ((cmd.flags & VFIO_DEVICE_ATTACH_PASID) !== 0) throw errno('EOPNOTSUPP', `${binding.bdf} does not support PASID attach`);
      return binding.ictx.lock.run(() => attachDevice(binding.ictx, binding.idev, cmd.ptId));
    });
  }

  /**
   * VFIO_DEVICE_DETACH_IOMMUFD_PT: the gate as for attach; unknown flags
   * EINVAL; PASID EOPNOTSUPP. Succeeds with nothing attached too; the IOAS
   * keeps its mappings.
   */
  detachIommufdPt(file: DeviceFile, flags: number): Promise<void> {
    return this.#devSet.run(async () => {
      const binding = this.#cdevBinding(file);
      if ((flags & ~VFIO_DEVICE_DETACH_PASID) !== 0) throw errno('EINVAL', `flags ${hex(flags)}: only DETACH_PASID`);
      if ((flags & VFIO_DEVICE_DETACH_PASID) !== 0) throw errno('EOPNOTSUPP', `${binding.bdf} does not support PASID detach`);
      await binding.ictx.lock.run(() => detachDevice(binding.ictx, binding.idev));
    });
  }

  /**
   * VFIO_GROUP_SET_CONTAINER on the group of the device behind `file`
   * (one function per group here), followed by what
   * VFIO_GROUP_GET_DEVICE_FD does to a device of it: the file becomes a
   * group-path device file whose function is bound to the container's
   * context and attached to its compat IOAS. In order: the device bound
   * through a cdev file EBUSY (its group cannot be opened); an fd the
   * caller does not hold EBADF; the group in a container already EINVAL;
   * the function gone ENODEV; not an iommufd EBADFD; then the compat IOAS
   * (made if there is none: ENOMEM), bind and attach (errors as attach's,
   * undone; a compat IOAS made here stays, as the kernel's does).
   */
  async setContainer(pid: number, file: DeviceFile, containerFd: number): Promise<void> {
    const containerFile = await settled(this.files.fileAt(pid, containerFd));
    await this.#devSet.run(async () => {
      const holder = this.#byDevice.get(file.device.bdf);
      if (holder?.via === 'cdev') throw errno('EBUSY', `${file.device.bdf} is bound to an iommufd through a device file: its group cannot be used`);
      const container = containerFile();
      if (holder !== undefined) throw errno('EINVAL', `the group of ${file.device.bdf} is in a container already`);
      if (!file.device.registered) throw errno('ENODEV', `${file.device.bdf} has gone away`);
      const ictx = this.#contextIn(container, containerFd);
      await ictx.lock.run(async () => {
        const ioas = ictx.vfioIoas ?? ictx.allocIoas();
        ictx.vfioIoas = ioas;
        const idev = bindDevice(ictx, file.device.bdf);
        try {
          await attachDevice(ictx, idev, ioas.id);
        } catch (error) {
          await unbindDevice(ictx, idev);
          throw error;
        }
        this.#remember({ handle: file.handle, bdf: file.device.bdf, via: 'group', ictx, idev });
      });
    });
  }

  /**
   * The device file is released (vfio_df_unbind_iommufd(), after the
   * device's close revoked its dma-bufs): the function leaves its domain,
   * its device object goes and the context is let go, which tears it down
   * if its file is gone too.
   */
  async deviceFileReleased(handle: string): Promise<void> {
    await this.#devSet.run(async () => {
      const binding = this.#byFile.get(handle);
      if (binding === undefined) return;
      this.#byFile.delete(handle);
      this.#byDevice.delete(binding.bdf);
      const { ictx } = binding;
      await ictx.lock.run(async () => {
        try {
          await unbindDevice(ictx, binding.idev);
        } finally {
          if (ictx.dead) this.#contexts.delete(ictx.handle);
        }
      });
    });
  }

  /* ---- introspection ---- */

  contexts(): IommufdListing[] {
    return [...this.#contexts.values()].map((ictx) => ({
      handle: ictx.handle,
      pid: ictx.pid,
      node: ictx.node,
      fileOpen: ictx.fileOpen,
      boundDevices: ictx.boundDevices,
      compatIoasId: ictx.vfioIoas?.id,
      objects: ictx.objects().map((object): IommufdObjectListing => {
        switch (object.type) {
          case 'ioas':
            return {
              id: object.id,
              type: 'ioas',
              domains: [...object.iopt.domains],
              areas: object.iopt.areas.map((area) => ({
                iova: area.iova,
                length: area.length,
                prot: area.prot,
                kind: area.pages.type,
                revoked: area.pages.revoked,
              })),
            };
          case 'hwpt-paging':
            return { id: object.id, type: 'hwpt-paging', ioasId: object.ioas.id, domainId: object.domainId, bdfs: [...object.devices].map((d) => d.bdf).sort() };
          case 'device':
            return { id: object.id, type: 'device', bdf: object.bdf, hwptId: object.hwpt?.id };
        }
      }),
    }));
  }

  /* ---- internals ---- */

  /** An ioctl on the context behind `fd`: ENOTTY for any other file (EBADF from the registry if not held). */
  async #ioctl<T>(pid: number, fd: number, operation: (ictx: IommufdCtx) => Promise<T>): Promise<T> {
    const file = await this.files.fileAt(pid, fd);
    const ictx = file.kind === 'iommufd' ? this.#contexts.get(file.handle) : undefined;
    if (ictx === undefined) throw errno('ENOTTY', `fd ${fd} of pid ${pid} is not an iommufd`);
    return ictx.lock.run(() => {
      // The fd's release overtook this ioctl: the context is gone.
      if (ictx.dead) throw errno('EBADF', `fd ${fd} of pid ${pid} was closed`);
      return operation(ictx);
    });
  }

  /** iommufd_ctx_from_fd() on a resolved fd: EBADFD if it is not an iommufd. */
  #contextIn(file: OpenFile, fd: number): IommufdCtx {
    const ictx = file.kind === 'iommufd' ? this.#contexts.get(file.handle) : undefined;
    if (ictx === undefined || ictx.dead) throw errno('EBADFD', `fd ${fd} is not an iommufd`);
    return ictx;
  }

  /** The binding the DMA-mapping device ioctls need: EINVAL without one, ENOTTY on a group-path file. */
  #cdevBinding(file: DeviceFile): DeviceBinding {
    const binding = this.#byFile.get(file.handle);
    if (binding === undefined) throw errno('EINVAL', `this device file is not bound to an iommufd (VFIO_DEVICE_BIND_IOMMUFD first)`);
    if (binding.via === 'group') throw errno('ENOTTY', 'this device file came through its group: the iommufd device ioctls are not its');
    return binding;
  }

  #remember(binding: DeviceBinding): void {
    this.#byFile.set(binding.handle, binding);
    this.#byDevice.set(binding.bdf, binding);
  }
}
