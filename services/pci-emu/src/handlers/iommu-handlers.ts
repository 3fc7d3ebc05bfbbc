import { pci } from '@p2p/proto';
import { unary } from '@p2p/server';
import type { PciBus } from '../bus/pci-bus';
import { domainToWire, targetFromWire } from './iommu-wire';

type IommuMethods =
  | 'createIommuDomain'
  | 'destroyIommuDomain'
  | 'attachIommuDomain'
  | 'detachIommuDomain'
  | 'iommuMap'
  | 'iommuUnmap'
  | 'listIommuDomains';

/** The platform IOMMU's RPCs: decode, call bus.iommu, encode; every rule lives in iommu/. */
export function iommuHandlers(bus: PciBus): Pick<pci.PciEmuServiceServer, IommuMethods> {
  return {
    createIommuDomain: unary(() => ({ domainId: bus.iommu.createDomain() })),
    destroyIommuDomain: unary((req: pci.DestroyIommuDomainRequest) => {
      bus.iommu.destroyDomain(req.domainId);
      return {};
    }),
    attachIommuDomain: unary((req: pci.AttachIommuDomainRequest) => {
      bus.iommu.attach(req.domainId, req.bdf);
      return {};
    }),
    detachIommuDomain: unary((req: pci.DetachIommuDomainRequest) => {
      bus.iommu.detach(req.domainId, req.bdf);
      return {};
    }),
    iommuMap: unary((req: pci.IommuMapRequest) => {
      bus.iommu.map(req.domainId, req.iova, req.length, req.prot, targetFromWire(req.target));
      return {};
    }),
    iommuUnmap: unary((req: pci.IommuUnmapRequest) => ({ unmapped: BigInt(bus.iommu.unmap(req.domainId, req.iova, req.length)) })),
    listIommuDomains: unary((req: pci.ListIommuDomainsRequest) => ({
      domains: bus.iommu.listDomains(req.domainId === 0 ? undefined : req.domainId).map(domainToWire),
    })),
  };
}
