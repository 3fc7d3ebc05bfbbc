import type { WorkCompletion } from '../cq/work-completion';
import type { AsyncEvent } from '../events/async-events';
import { Nic } from '../nic';
import type { QueuePair } from '../qp/queue-pair';
import {
  IBV_ACCESS_LOCAL_WRITE,
  IBV_ACCESS_REMOTE_ATOMIC,
  IBV_ACCESS_REMOTE_READ,
  IBV_ACCESS_REMOTE_WRITE,
} from '../verbs/access-flags';
import { QpState } from '../verbs/enums';
import {
  IBV_QP_ACCESS_FLAGS,
  IBV_QP_AV,
  IBV_QP_DEST_QPN,
  IBV_QP_MAX_DEST_RD_ATOMIC,
  IBV_QP_MAX_QP_RD_ATOMIC,
  IBV_QP_MIN_RNR_TIMER,
  IBV_QP_PATH_MTU,
  IBV_QP_PKEY_INDEX,
  IBV_QP_PORT,
  IBV_QP_RETRY_CNT,
  IBV_QP_RNR_RETRY,
  IBV_QP_RQ_PSN,
  IBV_QP_SQ_PSN,
  IBV_QP_STATE,
  IBV_QP_TIMEOUT,
} from '../verbs/qp-attr-mask';
import type { Fabric, FabricEndpoint } from '../transport/fabric';
import { HeapMemory } from './heap-memory';
import { InMemoryFabric } from './in-memory-fabric';

export const ALL_ACCESS = IBV_ACCESS_LOCAL_WRITE | IBV_ACCESS_REMOTE_WRITE | IBV_ACCESS_REMOTE_READ | IBV_ACCESS_REMOTE_ATOMIC;

export const INIT_MASK = IBV_QP_STATE | IBV_QP_PKEY_INDEX | IBV_QP_PORT | IBV_QP_ACCESS_FLAGS;
export const RTR_MASK =
  IBV_QP_STATE | IBV_QP_AV | IBV_QP_PATH_MTU | IBV_QP_DEST_QPN | IBV_QP_RQ_PSN | IBV_QP_MAX_DEST_RD_ATOMIC | IBV_QP_MIN_RNR_TIMER;
export const RTS_MASK = IBV_QP_STATE | IBV_QP_TIMEOUT | IBV_QP_RETRY_CNT | IBV_QP_RNR_RETRY | IBV_QP_SQ_PSN | IBV_QP_MAX_QP_RD_ATOMIC;

export interface Side {
  readonly nic: Nic;
  readonly pd: number;
  readonly cq: number;
  readonly qp: QueuePair;
  readonly mem: HeapMemory;
  readonly key: number;
  readonly iova: number;
  /** The NIC's async events, without their times. */
  readonly events: Omit<AsyncEvent, 'time'>[];
  poll(): WorkCompletion[];
}

/** A fabric a test builds NICs on. */
export interface TestFabric extends Fabric {
  attach(endpoint: FabricEndpoint): void;
}

export interface Pair<F extends TestFabric = InMemoryFabric> {
  readonly fabric: F;
  readonly a: Side;
  readonly b: Side;
}

export interface PairOptions {
  readonly cqe?: number;
  readonly qpAccess?: number;
  readonly retryCnt?: number;
  readonly rnrRetry?: number;
  readonly sqSigAll?: boolean;
  readonly maxSendWr?: number;
  readonly maxRdAtomic?: number;
}

function side(fabric: TestFabric, gid: string, iova: number, options: PairOptions): Side {
  const nic = new Nic({ gid, fabric });
  fabric.attach(nic);
  const pd = nic.allocPd().handle;
  const cq = nic.createCq(options.cqe ?? 255).handle;
  const qp = nic.createQp({
    pdHandle: pd,
    sendCqHandle: cq,
    recvCqHandle: cq,
    cap: { maxSendWr: options.maxSendWr ?? 64, maxRecvWr: 64, maxSendSge: 4, maxRecvSge: 4 },
    sqSigAll: options.sqSigAll ?? true,
  });
  const mem = new HeapMemory(1 << 16);
  const key = nic.regMr(pd, mem, iova, ALL_ACCESS).lkey;
  const events: Omit<AsyncEvent, 'time'>[] = [];
  nic.events.addListener(({ time: _time, ...event }) => events.push(event));
  return { nic, pd, cq, qp, mem, key, iova, events, poll: () => nic.pollCq(cq, 1000) };
}

/** Drive `qp` to INIT. */
export function toInit(qp: QueuePair, access = ALL_ACCESS): void {
  qp.modify({ qpState: QpState.INIT, pkeyIndex: 0, portNum: 1, qpAccessFlags: access }, INIT_MASK);
}

/** Drive `qp` to RTR towards (dgid, dqpn). */
export function toRtr(qp: QueuePair, dgid: string, dqpn: number): void {
  qp.modify(
    { qpState: QpState.RTR, dgid, pathMtu: 5, destQpNum: dqpn, rqPsn: 0, maxDestRdAtomic: 16, minRnrTimer: 12 },
    RTR_MASK,
  );
}

export function toRts(qp: QueuePair, retryCnt = 7, rnrRetry = 7, maxRdAtomic = 16): void {
  qp.modify({ qpState: QpState.RTS, timeout: 14, retryCnt, rnrRetry, sqPsn: 0, maxRdAtomic }, RTS_MASK);
}

/** Two NICs on one in-memory fabric, one RC QP each, connected and in RTS. */
export function connectedPair(options: PairOptions = {}): Pair {
  return connectedPairOn(new InMemoryFabric(), options);
}

/** Two NICs on `fabric`, one RC QP each, connected and in RTS. */
export function connectedPairOn<F extends TestFabric>(fabric: F, options: PairOptions = {}): Pair<F> {
  const a = side(fabric, 'gid-a', 0x10000, options);
  const b = side(fabric, 'gid-b', 0x20000, options);
  for (const [self, peer] of [
    [a, b],
    [b, a],
  ] as const) {
    toInit(self.qp, options.qpAccess ?? ALL_ACCESS);
    toRtr(self.qp, peer.nic.gid, peer.qp.qpNum);
    toRts(self.qp, options.retryCnt ?? 7, options.rnrRetry ?? 7, options.maxRdAtomic ?? 16);
  }
  a.events.length = 0;
  b.events.length = 0;
  return { fabric, a, b };
}

/** Let page faults, RNR timers and other asynchronous answers run. */
export function settle(ms = 5): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}
