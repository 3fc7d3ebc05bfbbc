import { expect } from 'chai';
import { ErrnoError } from '@p2p/errno';
import { QpState } from '../verbs/enums';
import {
  IBV_QP_ACCESS_FLAGS,
  IBV_QP_AV,
  IBV_QP_CAP,
  IBV_QP_CUR_STATE,
  IBV_QP_EN_SQD_ASYNC_NOTIFY,
  IBV_QP_MIN_RNR_TIMER,
  IBV_QP_PATH_MTU,
  IBV_QP_PKEY_INDEX,
  IBV_QP_PORT,
  IBV_QP_QKEY,
  IBV_QP_SQ_PSN,
  IBV_QP_STATE,
} from '../verbs/qp-attr-mask';
import { AsyncEventType } from '../verbs/enums';
import { connectedPair, INIT_MASK, RTR_MASK, RTS_MASK, toInit, toRtr, toRts } from '../testing/two-nics';
import { modifyQpRejection } from './state-table';
import type { QueuePair } from './queue-pair';

function expectEinval(fn: () => void): void {
  expect(fn).to.throw(ErrnoError).with.property('errno', 'EINVAL');
}

function fresh(): QueuePair {
  const { a } = connectedPair();
  a.qp.modify({ qpState: QpState.RESET }, IBV_QP_STATE);
  return a.qp;
}

describe('RC QP state machine (ib_modify_qp_is_ok)', () => {
  it('walks RESET -> INIT -> RTR -> RTS -> SQD -> RTS with exactly the required masks', () => {
    const qp = fresh();
    toInit(qp);
    expect(qp.state).to.equal(QpState.INIT);
    qp.modify({ qpState: QpState.INIT, qpAccessFlags: 1 }, IBV_QP_STATE | IBV_QP_ACCESS_FLAGS);
    expect(qp.attr.qpAccessFlags).to.equal(1);
    toRtr(qp, 'gid-b', 0x100);
    expect(qp.state).to.equal(QpState.RTR);
    toRts(qp);
    expect(qp.state).to.equal(QpState.RTS);
    qp.modify({ qpState: QpState.RTS, minRnrTimer: 3 }, IBV_QP_STATE | IBV_QP_MIN_RNR_TIMER);
    qp.modify({ qpState: QpState.SQD }, IBV_QP_STATE);
    expect(qp.state).to.equal(QpState.SQD);
    qp.modify({ qpState: QpState.SQD, pathMtu: 3 }, 0);
    expect(qp.state).to.equal(QpState.SQD);
    qp.modify({ qpState: QpState.RTS, curQpState: QpState.SQD }, IBV_QP_STATE | IBV_QP_CUR_STATE);
    expect(qp.state).to.equal(QpState.RTS);
  });

  it('allows any state -> RESET and -> ERR', () => {
    for (const steps of [0, 1, 2, 3, 4]) {
      for (const target of [QpState.RESET, QpState.ERR]) {
        const qp = fresh();
        if (steps >= 1) toInit(qp);
        if (steps >= 2) toRtr(qp, 'gid-b', 0x100);
        if (steps >= 3) toRts(qp);
        if (steps >= 4) qp.modify({ qpState: QpState.SQD }, IBV_QP_STATE);
        qp.modify({ qpState: target }, IBV_QP_STATE);
        expect(qp.state).to.equal(target);
      }
    }
    const qp = fresh();
    qp.modify({ qpState: QpState.ERR }, IBV_QP_STATE);
    qp.modify({ qpState: QpState.ERR }, IBV_QP_STATE);
    qp.modify({ qpState: QpState.RESET }, IBV_QP_STATE);
    expect(qp.state).to.equal(QpState.RESET);
  });

  it('refuses transitions not in the table, leaving the state alone', () => {
    const cases: [number, QpState][] = [
      [0, QpState.RTR],
      [0, QpState.RTS],
      [0, QpState.SQD],
      [0, QpState.SQE],
      [1, QpState.RTS],
      [1, QpState.SQD],
      [2, QpState.INIT],
      [2, QpState.RTR],
      [2, QpState.SQD],
      [3, QpState.INIT],
      [3, QpState.RTR],
      [3, QpState.SQE],
    ];
    for (const [steps, target] of cases) {
      const qp = fresh();
      if (steps >= 1) toInit(qp);
      if (steps >= 2) toRtr(qp, 'gid-b', 0x100);
      if (steps >= 3) toRts(qp);
      const before = qp.state;
      expectEinval(() => qp.modify({ qpState: target }, IBV_QP_STATE | (target === QpState.RTS ? RTS_MASK : 0)));
      expect(qp.state).to.equal(before);
    }
    const err = fresh();
    err.modify({ qpState: QpState.ERR }, IBV_QP_STATE);
    for (const target of [QpState.INIT, QpState.RTR, QpState.RTS]) {
      expectEinval(() => err.modify({ qpState: target }, IBV_QP_STATE));
      expect(err.state).to.equal(QpState.ERR);
    }
  });

  it('refuses each missing required attribute, state unchanged', () => {
    for (const [mask, prepare, target] of [
      [INIT_MASK, 0, QpState.INIT],
      [RTR_MASK, 1, QpState.RTR],
      [RTS_MASK, 2, QpState.RTS],
    ] as const) {
      for (let bit = 1; bit < 1 << 21; bit <<= 1) {
        if (bit === IBV_QP_STATE || (mask & bit) === 0) continue;
        const qp = fresh();
        if (prepare >= 1) toInit(qp);
        if (prepare >= 2) toRtr(qp, 'gid-b', 0x100);
        const before = qp.state;
        expectEinval(() =>
          qp.modify(
            { qpState: target, portNum: 1, pathMtu: 5, destQpNum: 1, retryCnt: 7, rnrRetry: 7, dgid: 'x' },
            mask & ~bit,
          ),
        );
        expect(qp.state).to.equal(before);
      }
    }
  });

  it('refuses attributes a transition does not take', () => {
    const qp = fresh();
    expectEinval(() => qp.modify({ qpState: QpState.INIT, portNum: 1 }, INIT_MASK | IBV_QP_QKEY));
    expectEinval(() => qp.modify({ qpState: QpState.INIT, portNum: 1 }, INIT_MASK | IBV_QP_CAP));
    expect(qp.state).to.equal(QpState.RESET);
    toInit(qp);
    expectEinval(() => toRtrWith(qp, IBV_QP_SQ_PSN));
    expectEinval(() => qp.modify({ qpState: QpState.INIT }, IBV_QP_STATE | IBV_QP_AV));
    expect(qp.state).to.equal(QpState.INIT);
    toRtr(qp, 'gid-b', 0x100);
    expectEinval(() => qp.modify({ qpState: QpState.RTS, portNum: 1, retryCnt: 7, rnrRetry: 7 }, RTS_MASK | IBV_QP_PORT));
    expect(qp.state).to.equal(QpState.RTR);
    toRts(qp);
    expectEinval(() => qp.modify({ qpState: QpState.RTS, pathMtu: 5 }, IBV_QP_STATE | IBV_QP_PATH_MTU));
    expectEinval(() => qp.modify({ qpState: QpState.ERR, pkeyIndex: 0 }, IBV_QP_STATE | IBV_QP_PKEY_INDEX));
    expect(qp.state).to.equal(QpState.RTS);
  });

  it('refuses IBV_QP_CUR_STATE from RESET/INIT and a cur_qp_state that is not the state', () => {
    expect(modifyQpRejection(QpState.INIT, QpState.INIT, IBV_QP_STATE | IBV_QP_CUR_STATE)).to.be.a('string');
    const qp = fresh();
    toInit(qp);
    toRtr(qp, 'gid-b', 0x100);
    expectEinval(() => qp.modify({ qpState: QpState.RTS, curQpState: QpState.INIT, retryCnt: 7, rnrRetry: 7 }, RTS_MASK | IBV_QP_CUR_STATE));
    expect(qp.state).to.equal(QpState.RTR);
  });

  it('refuses out-of-range values: port, retry counts, access flags', () => {
    const qp = fresh();
    expectEinval(() => qp.modify({ qpState: QpState.INIT, portNum: 2, pkeyIndex: 0, qpAccessFlags: 0 }, INIT_MASK));
    expectEinval(() => qp.modify({ qpState: QpState.INIT, portNum: 1, pkeyIndex: 0, qpAccessFlags: 1 << 20 }, INIT_MASK));
    toInit(qp);
    toRtr(qp, 'gid-b', 0x100);
    expectEinval(() => qp.modify({ qpState: QpState.RTS, retryCnt: 8, rnrRetry: 7 }, RTS_MASK));
    expect(qp.state).to.equal(QpState.RTR);
  });

  it('without IBV_QP_STATE modifies in place where the table allows cur -> cur', () => {
    const qp = fresh();
    toInit(qp);
    qp.modify({ qpAccessFlags: 0 }, IBV_QP_ACCESS_FLAGS);
    expect(qp.state).to.equal(QpState.INIT);
    toRtr(qp, 'gid-b', 0x100);
    expectEinval(() => qp.modify({ minRnrTimer: 1 }, IBV_QP_MIN_RNR_TIMER));
  });

  it('RTS -> SQD with IBV_QP_EN_SQD_ASYNC_NOTIFY raises SQ_DRAINED', () => {
    const { a } = connectedPair();
    a.qp.modify({ qpState: QpState.SQD, enSqdAsyncNotify: true }, IBV_QP_STATE | IBV_QP_EN_SQD_ASYNC_NOTIFY);
    expect(a.events).to.deep.equal([{ type: AsyncEventType.SQ_DRAINED, qpNum: a.qp.qpNum }]);
  });
});

function toRtrWith(qp: QueuePair, extra: number): void {
  qp.modify({ qpState: QpState.RTR, dgid: 'gid-b', pathMtu: 5, destQpNum: 0x100, minRnrTimer: 1 }, RTR_MASK | extra);
}
