import type { Authenticator } from '@p2p/auth';
import { vfio as wire } from '@p2p/proto';
import { actingPidOf, type CallWithMetadata, unary } from '@p2p/server';
import type { VfioPci } from '../vfio-pci';

/** VfioDeviceIommufdService: the device fd's iommufd ioctls and the group's container; decode, call the driver model, encode. */
export function deviceIommufdHandlers(vfio: VfioPci, auth: Authenticator): wire.VfioDeviceIommufdServiceServer {
  /** The process a call acts in: the caller's own, proven by its credential (see actingPid). */
  const as = async (call: CallWithMetadata, pid: number, what: string): Promise<number> => actingPidOf(auth, call, pid, what);
  return {
    bindIommufd: unary(async (req: wire.BindIommufdRequest, call) => ({
      outDevid: await vfio.bindIommufd(await as(call, req.pid, 'BindIommufd'), req.deviceFd, { flags: req.flags, iommufd: req.iommufd }),
    })),
    attachIommufdPt: unary(async (req: wire.AttachIommufdPtRequest, call) => ({
      ptId: await vfio.attachIommufdPt(await as(call, req.pid, 'AttachIommufdPt'), req.deviceFd, { flags: req.flags, ptId: req.ptId, pasid: req.pasid }),
    })),
    detachIommufdPt: unary(async (req: wire.DetachIommufdPtRequest, call) => {
      await vfio.detachIommufdPt(await as(call, req.pid, 'DetachIommufdPt'), req.deviceFd, req.flags);
      return {};
    }),
    setContainer: unary(async (req: wire.SetContainerRequest, call) => {
      await vfio.setContainer(await as(call, req.pid, 'SetContainer'), req.deviceFd, req.containerFd);
      return {};
    }),
  };
}
