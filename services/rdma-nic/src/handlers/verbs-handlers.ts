import type { rdma } from '@p2p/proto';
import { unary } from '@p2p/server';
import { portAttr } from '../context/device-attr';
import type { RdmaDevice } from '../context/rdma-device';
import { gidBytes } from '../link';
import type { OpenStreams } from './open-streams';
import { postCall, postDecoded } from './post-result';
import { postStream } from './post-stream';
import { watchAsyncEvents } from './watch-async-events';
import { watchCompletions } from './watch-completions';
import { qpAttrFromWire, qpAttrToWire, recvWrsFromWire, sendWrsFromWire, u64Arg, wcToWire } from './wire-verbs';

/**
 * RdmaNicService: find the caller's context, decode, call it, encode.
 * Every rule and every errno lives in the context and the NIC.
 */
export function rdmaHandlers(device: RdmaDevice, streams: OpenStreams): rdma.RdmaNicServiceServer {
  const context = (request: { pid: number; contextFd: number }) => device.context(request.pid, request.contextFd);
  return {
    openDevice: unary(async (req: rdma.OpenDeviceRequest) => ({ fd: await device.openDevice(req.pid) })),
    queryDevice: unary(async (req: rdma.QueryDeviceRequest) => {
      await context(req);
      return device.attr;
    }),
    queryPort: unary(async (req: rdma.QueryPortRequest) => {
      await context(req);
      const port = portAttr(req.portNum);
      return { ...port, state: port.state as rdma.PortState, gid: gidBytes(device.nic.gid) };
    }),
    allocPd: unary(async (req: rdma.AllocPdRequest) => ({ pdHandle: (await context(req)).allocPd() })),
    deallocPd: unary(async (req: rdma.DeallocPdRequest) => {
      (await context(req)).deallocPd(req.pdHandle);
      return {};
    }),
    regMr: unary(async (req: rdma.RegMrRequest) => {
      const ctx = await context(req);
      const mr = await ctx.regMr(req.pid, req.pdHandle, req.heapFd, u64Arg(req.offset, 'offset'), u64Arg(req.length, 'length'), u64Arg(req.iova, 'iova'), req.access);
      return { mrHandle: mr.handle, lkey: mr.lkey, rkey: mr.rkey };
    }),
    regDmabufMr: unary(async (req: rdma.RegDmabufMrRequest) => {
      const ctx = await context(req);
      const mr = await ctx.regDmabufMr(req.pid, req.pdHandle, req.fd, u64Arg(req.offset, 'offset'), u64Arg(req.length, 'length'), u64Arg(req.iova, 'iova'), req.access);
      return { mrHandle: mr.handle, lkey: mr.lkey, rkey: mr.rkey };
    }),
    deregMr: unary(async (req: rdma.DeregMrRequest) => {
      await (await context(req)).deregMr(req.mrHandle);
      return {};
    }),
    createCq: unary(async (req: rdma.CreateCqRequest) => {
      const cq = (await context(req)).createCq(req.cqe);
      return { cqHandle: cq.handle, cqe: cq.cqe };
    }),
    destroyCq: unary(async (req: rdma.DestroyCqRequest) => {
      (await context(req)).destroyCq(req.cqHandle);
      return {};
    }),
    pollCq: unary(async (req: rdma.PollCqRequest) => ({ completions: (await context(req)).pollCq(req.cqHandle, req.maxEntries).map(wcToWire) })),
    watchCompletions: watchCompletions(device, streams),
    createQp: unary(async (req: rdma.CreateQpRequest) => {
      const cap = req.cap ?? { maxSendWr: 0, maxRecvWr: 0, maxSendSge: 0, maxRecvSge: 0 };
      const qp = (await context(req)).createQp(req.pdHandle, req.sendCqHandle, req.recvCqHandle, cap, req.sqSigAll);
      return { qpNum: qp.qpNum, cap: { ...qp.cap } };
    }),
    modifyQp: unary(async (req: rdma.ModifyQpRequest) => {
      const ctx = await context(req);
      ctx.modifyQp(req.qpNum, qpAttrFromWire(req.attr, req.attrMask), req.attrMask);
      return {};
    }),
    queryQp: unary(async (req: rdma.QueryQpRequest) => ({ attr: qpAttrToWire((await context(req)).queryQp(req.qpNum)) })),
    destroyQp: unary(async (req: rdma.DestroyQpRequest) => {
      (await context(req)).destroyQp(req.qpNum);
      return {};
    }),
    postSend: postCall(async (req: rdma.PostSendRequest) => {
      const ctx = await context(req);
      return postDecoded((wrs) => ctx.postSend(req.qpNum, wrs), sendWrsFromWire(req.wrs));
    }),
    postRecv: postCall(async (req: rdma.PostRecvRequest) => {
      const ctx = await context(req);
      return postDecoded((wrs) => ctx.postRecv(req.qpNum, wrs), recvWrsFromWire(req.wrs));
    }),
    postStream: postStream(device, streams),
    watchAsyncEvents: watchAsyncEvents(device, streams),
  };
}
