import { IoPagetable } from './io-pagetable';

/** IOMMUFD_OBJ_IOAS: an I/O address space, its areas and the domains they are mapped into. */
export class Ioas {
  readonly type = 'ioas';
  readonly iopt = new IoPagetable();
  /** ioas->hwpt_list: the paging domains made for it. */
  readonly hwpts = new Set<HwptPaging>();

  constructor(readonly id: number) {}

  /** References besides the object table's: IOMMU_DESTROY is EBUSY while there are any. */
  get users(): number {
    return this.hwpts.size;
  }
}

/**
 * IOMMUFD_OBJ_HWPT_PAGING: a paging domain of an IOAS, one platform IOMMU
 * domain. The model makes them only as iommufd's attach does for an IOAS
 * id (an "auto domain": iommufd_device_auto_get_domain()); IOMMU_HWPT_ALLOC
 * is not modelled. It lives while devices are attached to it.
 */
export class HwptPaging {
  readonly type = 'hwpt-paging';
  readonly devices = new Set<IommufdDevice>();

  constructor(
    readonly id: number,
    readonly ioas: Ioas,
    /** The platform IOMMU's domain. */
    readonly domainId: number,
  ) {}

  get users(): number {
    return this.devices.size;
  }
}

/** IOMMUFD_OBJ_DEVICE: a function bound to the context (iommufd_device_bind()), attached to at most one HWPT. */
export class IommufdDevice {
  readonly type = 'device';
  hwpt: HwptPaging | undefined;

  constructor(
    readonly id: number,
    readonly bdf: string,
  ) {}

  /** vfio holds its device object until unbind: IOMMU_DESTROY is always EBUSY. */
  get users(): number {
    return 1;
  }
}

export type IommufdObject = Ioas | HwptPaging | IommufdDevice;
