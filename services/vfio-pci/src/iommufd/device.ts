import { ErrnoError, errno } from '@p2p/errno';
import { IOMMU_MSI_WINDOW } from '../ports/iommu-port';
import type { IommufdCtx } from './iommufd-ctx';
import { HwptPaging, type Ioas, IommufdDevice } from './objects';

/** A function's reserved regions (iommu_get_resv_regions()): the x86 MSI window, IOMMU_RESV_MSI. */
const DEVICE_RESERVED = [IOMMU_MSI_WINDOW];

/**
 * iommufd_device_bind(): the function joins the context as a device object
 * (ENOMEM past the object limit); it holds the context until unbind. The
 * caller has checked that no other context owns the function's DMA.
 */
export function bindDevice(ictx: IommufdCtx, bdf: string): IommufdDevice {
  const idev = new IommufdDevice(ictx.allocateId(), bdf);
  ictx.finalize(idev);
  ictx.deviceBound();
  return idev;
}

/**
 * iommufd_device_attach() / iommufd_device_replace() to `ptId`: an IOAS
 * (the device goes into one of its automatic domains: an existing one it
 * can join, an EINVAL from one just moving on to the next, else a new one)
 * or a paging HWPT. Unknown id ENOENT; an object of another type EINVAL;
 * the device's reserved regions meeting an area or allowed range of the
 * IOAS EADDRINUSE; then the domain's own conditions (filling a new domain
 * pins what the IOAS maps: EFAULT and friends; a BAR the function cannot
 * reach: EINVAL). A replace leaves the device where it was on failure.
 * Returns the HWPT's id.
 */
export async function attachDevice(ictx: IommufdCtx, idev: IommufdDevice, ptId: number): Promise<number> {
  const target = ictx.get(ptId);
  if (target.type === 'hwpt-paging') {
    await changeHwpt(ictx, idev, target, false);
    return target.id;
  }
  if (target.type !== 'ioas') throw errno('EINVAL', `object ${ptId} is a ${target.type}: attach takes an IOAS or a HWPT`);
  if (idev.hwpt?.ioas === target) return idev.hwpt.id;
  for (const hwpt of target.hwpts) {
    try {
      await changeHwpt(ictx, idev, hwpt, false);
      return hwpt.id;
    } catch (error) {
      if (!(error instanceof ErrnoError && error.errno === 'EINVAL')) throw error;
    }
  }
  return (await newAutoDomain(ictx, idev, target)).id;
}

/**
 * iommufd_device_detach(): the device is left blocked, its reserved
 * regions leave the IOAS, and an automatic domain left with no device is
 * destroyed (the IOAS's areas stay; with no domain left they are unpinned).
 * Detaching a device attached to nothing does nothing.
 */
export async function detachDevice(ictx: IommufdCtx, idev: IommufdDevice): Promise<void> {
  const hwpt = idev.hwpt;
  if (hwpt === undefined) return;
  idev.hwpt = undefined;
  hwpt.devices.delete(idev);
  hwpt.ioas.iopt.removeReserved(idev);
  let failure: unknown;
  await ictx.ports.iommu.detach(hwpt.domainId, idev.bdf).catch((error: unknown) => (failure ??= error));
  if (hwpt.devices.size === 0) await ictx.destroyObject(hwpt).catch((error: unknown) => (failure ??= error));
  if (failure !== undefined) throw failure;
}

/** iommufd_device_unbind(): detached, the device object destroyed, the context let go (which may tear it down). */
export async function unbindDevice(ictx: IommufdCtx, idev: IommufdDevice): Promise<void> {
  let failure: unknown;
  await detachDevice(ictx, idev).catch((error: unknown) => (failure ??= error));
  await ictx.destroyObject(idev);
  await ictx.deviceUnbound().catch((error: unknown) => (failure ??= error));
  if (failure !== undefined) throw failure;
}

/**
 * iommufd_device_auto_get_domain()'s allocation: a new platform domain as
 * a HWPT of the IOAS (ENOMEM past the object limit), the device attached
 * (immediate_attach), then iopt_table_add_domain() fills it with the IOAS.
 * Everything is undone on failure.
 */
async function newAutoDomain(ictx: IommufdCtx, idev: IommufdDevice, ioas: Ioas): Promise<HwptPaging> {
  const id = ictx.allocateId();
  let domainId: number;
  try {
    domainId = await ictx.ports.iommu.createDomain();
  } catch (error) {
    ictx.abort(id);
    throw error;
  }
  const hwpt = new HwptPaging(id, ioas, domainId);
  try {
    await changeHwpt(ictx, idev, hwpt, true);
  } catch (error) {
    await ictx.ports.iommu.destroyDomain(domainId).catch(() => undefined);
    ictx.abort(id);
    throw error;
  }
  ictx.finalize(hwpt);
  ioas.hwpts.add(hwpt);
  return hwpt;
}

/**
 * iommufd_device_change_pt(): the device's reserved regions enter the new
 * IOAS (if it is another one), the function moves domain in the platform,
 * and a new domain gets the IOAS's areas. The old HWPT lets the device go
 * only once all of that worked, and is destroyed if it was its last.
 */
async function changeHwpt(ictx: IommufdCtx, idev: IommufdDevice, hwpt: HwptPaging, fresh: boolean): Promise<void> {
  const old = idev.hwpt;
  if (old === hwpt) return;
  const { iommu } = ictx.ports;
  const iopt = hwpt.ioas.iopt;
  const newIoas = old?.ioas !== hwpt.ioas;
  if (newIoas) iopt.reserve(idev, DEVICE_RESERVED);
  try {
    if (old !== undefined) await iommu.detach(old.domainId, idev.bdf);
    try {
      await iommu.attach(hwpt.domainId, idev.bdf);
      if (fresh) {
        try {
          await iopt.addDomain(hwpt.domainId);
        } catch (error) {
          await iommu.detach(hwpt.domainId, idev.bdf).catch(() => undefined);
          throw error;
        }
      }
    } catch (error) {
      if (old !== undefined) await iommu.attach(old.domainId, idev.bdf).catch(() => undefined);
      throw error;
    }
  } catch (error) {
    if (newIoas) iopt.removeReserved(idev);
    throw error;
  }
  hwpt.devices.add(idev);
  idev.hwpt = hwpt;
  if (old === undefined) return;
  old.devices.delete(idev);
  if (newIoas) old.ioas.iopt.removeReserved(idev);
  if (old.devices.size === 0) await ictx.destroyObject(old);
}
