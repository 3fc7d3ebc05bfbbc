import type { rdma } from '@p2p/proto';
import { unary } from '@p2p/server';
import { portAttr } from '../context/device-attr';
import type { RdmaDevice } from '../context/rdma-device';
import { gidBytes } from '../link';
import type { OpenStreams } from './open-streams';
import type { VerbsCallers } from './verbs-callers';
import { postCall, postDecoded } from './post-result';
import { postStream } from './post-stream';
import { watchAsyncEvents } from './watch-async-events';
import { watchCompletions } from './watch-completions';
import { qpAttrFromWire, qpAttrToWire, recvWrsFromWire, sendWrsFromWire, u64Arg, wcToWire } from './proto-verbs';

/**
 * RdmaNicService: find the caller's context, decode, call it, encode.
 * Every rule and every errno lives in the context and the NIC.
 */
export function rdmaHandlers(device: RdmaDevice, streams: OpenStreams, callers: VerbsCallers): rdma.RdmaNicServiceServer {
  return {
    openDevice: unary(async (req: rdma.OpenDeviceRequest, call) => ({ fd: await device.openDevice(await callers.pid(call, req.pid, 'OpenDevice')) })),
    openUserQueues: unary(async (req: rdma.OpenUserQueuesRequest, call) => {
      const ctx = await callers.context(call, req, 'OpenUserQueues');
      return ctx.openUserQueues(await callers.pid(call, req.pid, 'OpenUserQueues'), req.doorbellPageFd);
    }),
    queryDevice: unary(async (req: rdma.QueryDeviceRequest, call) => {
      await callers.context(call, req, 'QueryDevice');
      return device.attr;
    }),
    queryPort: unary(async (req: rdma.QueryPortRequest, call) => {
      await callers.context(call, req, 'QueryPort');
      const port = portAttr(req.portNum);
      return { ...port, state: port.state as rdma.PortState, gid: gidBytes(device.nic.gid) };
    }),
    allocPd: unary(async (req: rdma.AllocPdRequest, call) => ({ pdHandle: (await callers.context(call, req, 'AllocPd')).allocPd() })),
    deallocPd: unary(async (req: rdma.DeallocPdRequest, call) => {
      (await callers.context(call, req, 'DeallocPd')).deallocPd(req.pdHandle);
      return {};
    }),
    regMr: unary(async (req: rdma.RegMrRequest, call) => {
      const ctx = await callers.context(call, req, 'RegMr');
      const mr = await ctx.regMr(await callers.pid(call, req.pid, 'RegMr'), req.pdHandle, req.heapFd, u64Arg(req.offset, 'offset'), u64Arg(req.length, 'length'), u64Arg(req.iova, 'iova'), req.access);
      return { mrHandle: mr.handle, lkey: mr.lkey, rkey: mr.rkey, addr: req.iova, length: req.length };
    }),
    regDmabufMr: unary(async (req: rdma.RegDmabufMrRequest, call) => {
      const ctx = await callers.context(call, req, 'RegDmabufMr');
      const mr = await ctx.regDmabufMr(await callers.pid(call, req.pid, 'RegDmabufMr'), req.pdHandle, req.fd, u64Arg(req.offset, 'offset'), u64Arg(req.length, 'length'), u64Arg(req.iova, 'iova'), req.access);
      return { mrHandle: mr.handle, lkey: mr.lkey, rkey: mr.rkey, addr: req.iova, length: req.length };
    }),
    reregMr: unary(async (req: rdma.ReregMrRequest, call) => {
      const ctx = await callers.context(call, req, 'ReregMr');
      const change = { pdHandle: req.pdHandle, heapFd: req.heapFd, offset: u64Arg(req.offset, 'offset'), length: u64Arg(req.length, 'length'), iova: u64Arg(req.iova, 'iova'), access: req.access };
      const mr = await ctx.reregMr(await callers.pid(call, req.pid, 'ReregMr'), req.mrHandle, req.flags, change);
      return { lkey: mr.lkey, rkey: mr.rkey, addr: BigInt(mr.iova), length: BigInt(mr.length) };
    }),
    deregMr: unary(async (req: rdma.DeregMrRequest, call) => {
      await (await callers.context(call, req, 'DeregMr')).deregMr(req.mrHandle);
      return {};
    }),
    createCq: unary(async (req: rdma.CreateCqRequest, call) => {
      const ctx = await callers.context(call, req, 'CreateCq');
      const cq = req.ringFd === undefined ? ctx.createCq(req.cqe) : await ctx.createUserCq(await callers.pid(call, req.pid, 'CreateCq'), req.cqe, req.ringFd);
      return { cqHandle: cq.handle, cqe: cq.cqe };
    }),
    destroyCq: unary(async (req: rdma.DestroyCqRequest, call) => {
      (await callers.context(call, req, 'DestroyCq')).destroyCq(req.cqHandle);
      return {};
    }),
    pollCq: unary(async (req: rdma.PollCqRequest, call) => ({ completions: (await callers.context(call, req, 'PollCq')).pollCq(req.cqHandle, req.maxEntries).map(wcToWire) })),
    watchCompletions: watchCompletions(callers, streams),
    createQp: unary(async (req: rdma.CreateQpRequest, call) => {
      const cap = req.cap ?? { maxSendWr: 0, maxRecvWr: 0, maxSendSge: 0, maxRecvSge: 0, maxInlineData: 0 };
      const ctx = await callers.context(call, req, 'CreateQp');
      const qp =
        req.ringFd === undefined
          ? ctx.createQp(req.pdHandle, req.sendCqHandle, req.recvCqHandle, cap, req.sqSigAll)
          : await ctx.createUserQp(await callers.pid(call, req.pid, 'CreateQp'), req.pdHandle, req.sendCqHandle, req.recvCqHandle, cap, req.sqSigAll, req.ringFd);
      return { qpNum: qp.qpNum, cap: { ...qp.cap, maxInlineData: 0 } };
    }),
    modifyQp: unary(async (req: rdma.ModifyQpRequest, call) => {
      const ctx = await callers.context(call, req, 'ModifyQp');
      ctx.modifyQp(req.qpNum, qpAttrFromWire(req.attr, req.attrMask), req.attrMask);
      return {};
    }),
    queryQp: unary(async (req: rdma.QueryQpRequest, call) => {
      const ctx = await callers.context(call, req, 'QueryQp');
      return { attr: qpAttrToWire(ctx.queryQp(req.qpNum)), cap: { ...ctx.qpCap(req.qpNum), maxInlineData: 0 } };
    }),
    destroyQp: unary(async (req: rdma.DestroyQpRequest, call) => {
      (await callers.context(call, req, 'DestroyQp')).destroyQp(req.qpNum);
      return {};
    }),
    postSend: postCall(async (req: rdma.PostSendRequest, call) => {
      const ctx = await callers.context(call, req, 'PostSend');
      return postDecoded((wrs) => ctx.postSend(req.qpNum, wrs), sendWrsFromWire(req.wrs));
    }),
    postRecv: postCall(async (req: rdma.PostRecvRequest, call) => {
      const ctx = await callers.context(call, req, 'PostRecv');
      return postDecoded((wrs) => ctx.postRecv(req.qpNum, wrs), recvWrsFromWire(req.wrs));
    }),
    postStream: postStream(callers, streams),
    watchAsyncEvents: watchAsyncEvents(callers, streams),
  };
}
