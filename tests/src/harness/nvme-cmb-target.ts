import type { RegistrySession } from '@p2p/dmabuf-client';
import { NVME_CQE_SIZE } from '@p2p/pci-emu';
import { O_RDWR, vfioUapi } from '@p2p/vfio-pci';
import { IBV_ACCESS_LOCAL_WRITE, IBV_ACCESS_REMOTE_READ, IBV_ACCESS_REMOTE_WRITE, type HostMr, type VerbsContext } from '@p2p/verbs';
import { NvmeDriver, type VfioClients, type VfioDevice, VfioDmaSpace } from '@p2p/user-driver';

/*
 * The target side of the seed's flow (host X): a process owns nvme1 through
 * vfio-pci, places an I/O queue pair in nvme1's CMB, exports the CMB and
 * BAR0's doorbell page as dma-bufs and registers both on its NIC, so that a
 * remote host drives the controller by RDMA alone. The example
 * (examples/rdma-nvme-doorbell.ts) and the NVMe fault tests share it.
 */

export const NVME0 = '0000:03:00.0';
export const NVME1 = '0000:08:00.0';
export const NVME_BAR0 = 0;
export const NVME_CMB_BAR = 2;
/** Where things live in nvme1's CMB: the SQ, the CQ, then data; the first CMB_EXPORTED bytes are exported. */
export const CMB_SQ = 0;
export const CMB_CQ = 0x1000;
export const CMB_DATA = 0x1_0000;
export const CMB_EXPORTED = 0x3_0000;
/** BAR0's first doorbell page (DSTRD 0). */
export const DOORBELL_PAGE = 0x1000;
/** Offsets in the doorbell page of SQ `qid`'s tail and CQ `qid`'s head (DSTRD 0). */
export const sqTailDoorbell = (qid: number): number => 4 * (2 * qid);
export const cqHeadDoorbell = (qid: number): number => 4 * (2 * qid + 1);

const { VFIO_DEVICE_FEATURE_GET, VFIO_DEVICE_FEATURE_DMA_BUF } = vfioUapi;

/** nvme1 owned through vfio-pci, its controller up and its CMB enabled, the CMB and doorbell page exported. */
export interface CmbTarget {
  readonly space: VfioDmaSpace;
  readonly nvme: VfioDevice;
  readonly driver: NvmeDriver;
  /** The CMB's bus address (CMBMSC.CBA): what SQEs and PRPs name. */
  readonly cmbAddress: bigint;
  readonly cmbFd: number;
  readonly doorbellFd: number;
}

/** VFIO_DEVICE_FEATURE_DMA_BUF of one range of BAR `region` of `device`; the new fd. */
export async function exportDeviceRange(
  session: RegistrySession,
  clients: Pick<VfioClients, 'device'>,
  device: Pick<VfioDevice, 'fd'>,
  region: number,
  offset: number,
  length: number,
): Promise<number> {
  const { fd } = await clients.device.deviceFeature({
    pid: session.pid,
    deviceFd: device.fd,
    argsz: 0,
    flags: VFIO_DEVICE_FEATURE_GET | VFIO_DEVICE_FEATURE_DMA_BUF,
    payload: { $case: 'dmaBuf', value: { regionIndex: region, openFlags: O_RDWR, flags: 0, dmaRanges: [{ offset: BigInt(offset), length: BigInt(length) }] } },
  });
  return fd;
}

/**
 * Opens nvme1 (bound to vfio-pci already), brings its controller up,
 * enables its CMB and exports the CMB's first CMB_EXPORTED bytes and BAR0's
 * doorbell page.
 */
export async function openCmbTarget(session: RegistrySession, clients: VfioClients): Promise<CmbTarget> {
  const space = await VfioDmaSpace.open(session, clients);
  const nvme = await space.openDevice(NVME1);
  const driver = await NvmeDriver.start(nvme.registers, space);
  const cmb = await driver.enableCmb(await nvme.barAddress(NVME_CMB_BAR));
  const cmbFd = await exportDeviceRange(session, clients, nvme, NVME_CMB_BAR, 0, CMB_EXPORTED);
  const doorbellFd = await exportDeviceRange(session, clients, nvme, NVME_BAR0, DOORBELL_PAGE, 0x1000);
  return { space, nvme, driver, cmbAddress: cmb.address, cmbFd, doorbellFd };
}

/**
 * I/O queue pair `qid` of `entries` entries with its SQ at `sqOffset` and
 * its CQ at `cqOffset` of the CMB. The CQ's phase tags start at 0: a CPU
 * write through vfio-pci's BAR2 region zeroes it first.
 */
export async function createCmbQueues(session: RegistrySession, clients: VfioClients, target: CmbTarget, qid: number, entries: number, sqOffset = CMB_SQ, cqOffset = CMB_CQ): Promise<void> {
  await clients.device.regionWrite({ pid: session.pid, deviceFd: target.nvme.fd, index: NVME_CMB_BAR, offset: BigInt(cqOffset), data: Buffer.alloc(entries * NVME_CQE_SIZE) });
  await target.driver.createIoQueues(qid, entries, target.cmbAddress + BigInt(sqOffset), target.cmbAddress + BigInt(cqOffset));
}

/** The CMB (remote read and write) and the doorbell page (remote write) as dma-buf MRs of `pd` on the target's NIC. */
export async function registerCmbTarget(ctx: VerbsContext, pd: number, target: CmbTarget): Promise<{ cmbMr: HostMr; doorbellMr: HostMr }> {
  const cmbMr = await ctx.regDmabufMr(pd, { fd: target.cmbFd, offset: 0, length: CMB_EXPORTED, iova: 0, access: IBV_ACCESS_LOCAL_WRITE | IBV_ACCESS_REMOTE_WRITE | IBV_ACCESS_REMOTE_READ });
  const doorbellMr = await ctx.regDmabufMr(pd, { fd: target.doorbellFd, offset: 0, length: 0x1000, iova: 0, access: IBV_ACCESS_LOCAL_WRITE | IBV_ACCESS_REMOTE_WRITE });
  return { cmbMr, doorbellMr };
}

/** One RC QP on a CQ of its own, with what its peer needs to connect to it. */
export interface RcEnd {
  readonly cq: number;
  readonly qpNum: number;
  readonly gid: Uint8Array;
}

/**
 * An RC QP on each side, connected by GID and QPN: the target's accepts
 * remote writes and reads, the initiator's asks for nothing.
 */
export async function connectRcPair(target: { ctx: VerbsContext; pd: number }, initiator: { ctx: VerbsContext; pd: number }, depth = 16): Promise<{ target: RcEnd; initiator: RcEnd }> {
  const end = async ({ ctx, pd }: { ctx: VerbsContext; pd: number }): Promise<RcEnd> => {
    const { cqHandle } = await ctx.createCq(depth);
    const { qpNum } = await ctx.createQp({ pdHandle: pd, sendCqHandle: cqHandle, recvCqHandle: cqHandle, cap: { maxSendWr: depth, maxRecvWr: depth, maxSendSge: 1, maxRecvSge: 1 } });
    return { cq: cqHandle, qpNum, gid: (await ctx.queryPort()).gid };
  };
  const x = await end(target);
  const y = await end(initiator);
  await target.ctx.connectRc(x.qpNum, { gid: y.gid, qpNum: y.qpNum }, { access: IBV_ACCESS_REMOTE_WRITE | IBV_ACCESS_REMOTE_READ });
  await initiator.ctx.connectRc(y.qpNum, { gid: x.gid, qpNum: x.qpNum }, { access: 0 });
  return { target: x, initiator: y };
}
