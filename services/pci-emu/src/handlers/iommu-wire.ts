import { errno } from '@p2p/errno';
import { pci } from '@p2p/proto';
import type { DmaErrorName } from '../devices/dma-engine';
import type { IommuDomainInfo } from '../iommu/iommu';
import type { IommuFaultReason } from '../iommu/iommu-fault';
import type { IommuMapping, MappingTarget } from '../iommu/iommu-mapping';
import { toNumber } from './u64';

const FAULT_REASONS: Record<IommuFaultReason, pci.IommuFaultReason> = {
  NO_DOMAIN: pci.IommuFaultReason.IOMMU_FAULT_REASON_NO_DOMAIN,
  NOT_MAPPED: pci.IommuFaultReason.IOMMU_FAULT_REASON_NOT_MAPPED,
  PERMISSION: pci.IommuFaultReason.IOMMU_FAULT_REASON_PERMISSION,
};

const DMA_ERRORS: Record<DmaErrorName, pci.DmaError> = {
  NONE: pci.DmaError.DMA_ERROR_UNSPECIFIED,
  IOMMU_FAULT_READ: pci.DmaError.DMA_ERROR_IOMMU_FAULT_READ,
  IOMMU_FAULT_WRITE: pci.DmaError.DMA_ERROR_IOMMU_FAULT_WRITE,
  BAD_LENGTH: pci.DmaError.DMA_ERROR_BAD_LENGTH,
  MASTER_ABORT: pci.DmaError.DMA_ERROR_MASTER_ABORT,
  NO_BUS_MASTER: pci.DmaError.DMA_ERROR_NO_BUS_MASTER,
  DATA: pci.DmaError.DMA_ERROR_DATA,
  BAD_DESCRIPTOR: pci.DmaError.DMA_ERROR_BAD_DESCRIPTOR,
  BAD_RING: pci.DmaError.DMA_ERROR_BAD_RING,
  BAD_DOORBELL: pci.DmaError.DMA_ERROR_BAD_DOORBELL,
};

export const faultReasonToWire = (reason: IommuFaultReason): pci.IommuFaultReason => FAULT_REASONS[reason];
export const dmaErrorToWire = (error: DmaErrorName): pci.DmaError => DMA_ERRORS[error];
export const dmaStatusToWire = (status: 'DONE' | 'ERROR'): pci.DmaStatus =>
  status === 'DONE' ? pci.DmaStatus.DMA_STATUS_DONE : pci.DmaStatus.DMA_STATUS_ERROR;

/** IommuMap's target; none is EINVAL. Offsets and lengths past 2^53 are EOVERFLOW (toNumber). */
export function targetFromWire(target: pci.IommuMapRequest['target']): MappingTarget {
  switch (target?.$case) {
    case 'host':
      return {
        kind: 'host',
        extents: target.value.extents.map((extent) => ({
          segment: extent.segment,
          offset: toNumber(extent.offset, 'extent offset'),
          length: toNumber(extent.length, 'extent length'),
        })),
      };
    case 'bar':
      return { kind: 'bar', bdf: target.value.bdf, bar: target.value.bar, offset: toNumber(target.value.offset, 'BAR offset') };
    default:
      throw errno('EINVAL', 'IommuMap needs a target: host or bar');
  }
}

function targetToWire(target: MappingTarget): pci.IommuMapping['target'] {
  return target.kind === 'host'
    ? { $case: 'host', value: { extents: target.extents.map((e) => ({ segment: e.segment, offset: BigInt(e.offset), length: BigInt(e.length) })) } }
    : { $case: 'bar', value: { bdf: target.bdf, bar: target.bar, offset: BigInt(target.offset) } };
}

function mappingToWire(mapping: IommuMapping): pci.IommuMapping {
  return { iova: BigInt(mapping.iova), length: BigInt(mapping.length), prot: mapping.prot, target: targetToWire(mapping.target) };
}

export function domainToWire(domain: IommuDomainInfo): pci.IommuDomain {
  return {
    domainId: domain.id,
    bdfs: [...domain.devices],
    mappings: domain.mappings.map(mappingToWire),
    mappedBytes: BigInt(domain.mappedBytes),
  };
}
