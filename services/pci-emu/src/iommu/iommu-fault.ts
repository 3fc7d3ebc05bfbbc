import { ErrnoError } from '@p2p/errno';

/**
 * Why a translation failed: the requester is attached to no domain (the
 * blocking domain), nothing is mapped at the IOVA, or the mapping lacks the
 * access's permission (IOMMU_FAULT_PERM_READ/WRITE in the kernel's
 * iommu_fault_event terms).
 */
export type IommuFaultReason = 'NO_DOMAIN' | 'NOT_MAPPED' | 'PERMISSION';

/** What the IOMMU records of a fault: who asked, through which domain, where, and why. */
export interface IommuFaultRecord {
  readonly bdf: string;
  /** 0 when the requester has no domain. */
  readonly domainId: number;
  /** The first IOVA of the access with no valid translation. */
  readonly iova: bigint;
  readonly write: boolean;
  readonly reason: IommuFaultReason;
}

/**
 * A DMA the IOMMU refused: EFAULT carrying the fault record. The IOMMU has
 * already reported it (an iommu-fault event) when this is thrown.
 */
export class IommuFault extends ErrnoError {
  constructor(readonly fault: IommuFaultRecord) {
    super(
      'EFAULT',
      `IOMMU fault: ${fault.bdf} ${fault.write ? 'write' : 'read'} at IOVA 0x${fault.iova.toString(16)}` +
        `${fault.domainId === 0 ? '' : ` in domain ${fault.domainId}`}: ${fault.reason}`,
    );
  }
}
