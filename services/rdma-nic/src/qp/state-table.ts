import { QpState } from '../verbs/enums';
import {
  IBV_QP_ACCESS_FLAGS,
  IBV_QP_ALT_PATH,
  IBV_QP_AV,
  IBV_QP_CUR_STATE,
  IBV_QP_DEST_QPN,
  IBV_QP_EN_SQD_ASYNC_NOTIFY,
  IBV_QP_MAX_DEST_RD_ATOMIC,
  IBV_QP_MAX_QP_RD_ATOMIC,
  IBV_QP_MIN_RNR_TIMER,
  IBV_QP_PATH_MIG_STATE,
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

interface Transition {
  readonly req: number;
  readonly opt: number;
}

const FREE: Transition = { req: 0, opt: 0 };

/**
 * The IB_QPT_RC column of qp_state_table[][] in drivers/infiniband/core/verbs.c:
 * for each valid cur -> next, the attributes it requires and those it allows.
 * SQE is reachable only for UD/UC QPs; RC errors go straight to ERR.
 */
const RC_TABLE: ReadonlyMap<QpState, ReadonlyMap<QpState, Transition>> = new Map<QpState, ReadonlyMap<QpState, Transition>>([
  [
    QpState.RESET,
    new Map<QpState, Transition>([
      [QpState.RESET, FREE],
      [QpState.INIT, { req: IBV_QP_PKEY_INDEX | IBV_QP_PORT | IBV_QP_ACCESS_FLAGS, opt: 0 }],
      [QpState.ERR, FREE],
    ]),
  ],
  [
    QpState.INIT,
    new Map<QpState, Transition>([
      [QpState.RESET, FREE],
      [QpState.ERR, FREE],
      [QpState.INIT, { req: 0, opt: IBV_QP_PKEY_INDEX | IBV_QP_PORT | IBV_QP_ACCESS_FLAGS }],
      [
        QpState.RTR,
        {
          req: IBV_QP_AV | IBV_QP_PATH_MTU | IBV_QP_DEST_QPN | IBV_QP_RQ_PSN | IBV_QP_MAX_DEST_RD_ATOMIC | IBV_QP_MIN_RNR_TIMER,
          opt: IBV_QP_ALT_PATH | IBV_QP_ACCESS_FLAGS | IBV_QP_PKEY_INDEX,
        },
      ],
    ]),
  ],
  [
    QpState.RTR,
    new Map<QpState, Transition>([
      [QpState.RESET, FREE],
      [QpState.ERR, FREE],
      [
        QpState.RTS,
        {
          req: IBV_QP_TIMEOUT | IBV_QP_RETRY_CNT | IBV_QP_RNR_RETRY | IBV_QP_SQ_PSN | IBV_QP_MAX_QP_RD_ATOMIC,
          opt: IBV_QP_CUR_STATE | IBV_QP_ALT_PATH | IBV_QP_ACCESS_FLAGS | IBV_QP_MIN_RNR_TIMER | IBV_QP_PATH_MIG_STATE,
        },
      ],
    ]),
  ],
  [
    QpState.RTS,
    new Map<QpState, Transition>([
      [QpState.RESET, FREE],
      [QpState.ERR, FREE],
      [
        QpState.RTS,
        {
          req: 0,
          opt: IBV_QP_CUR_STATE | IBV_QP_ACCESS_FLAGS | IBV_QP_ALT_PATH | IBV_QP_PATH_MIG_STATE | IBV_QP_MIN_RNR_TIMER,
        },
      ],
      [QpState.SQD, { req: 0, opt: IBV_QP_EN_SQD_ASYNC_NOTIFY }],
    ]),
  ],
  [
    QpState.SQD,
    new Map<QpState, Transition>([
      [QpState.RESET, FREE],
      [QpState.ERR, FREE],
      [
        QpState.RTS,
        {
          req: 0,
          opt: IBV_QP_CUR_STATE | IBV_QP_ALT_PATH | IBV_QP_ACCESS_FLAGS | IBV_QP_MIN_RNR_TIMER | IBV_QP_PATH_MIG_STATE,
        },
      ],
      [
        QpState.SQD,
        {
          req: 0,
          opt:
            IBV_QP_PORT |
            IBV_QP_AV |
            IBV_QP_TIMEOUT |
            IBV_QP_RETRY_CNT |
            IBV_QP_RNR_RETRY |
            IBV_QP_MAX_QP_RD_ATOMIC |
            IBV_QP_MAX_DEST_RD_ATOMIC |
            IBV_QP_CUR_STATE |
            IBV_QP_ALT_PATH |
            IBV_QP_ACCESS_FLAGS |
            IBV_QP_PKEY_INDEX |
            IBV_QP_MIN_RNR_TIMER |
            IBV_QP_PATH_MIG_STATE,
        },
      ],
    ]),
  ],
  [
    QpState.SQE,
    new Map<QpState, Transition>([
      [QpState.RESET, FREE],
      [QpState.ERR, FREE],
      [QpState.RTS, FREE],
    ]),
  ],
  [
    QpState.ERR,
    new Map<QpState, Transition>([
      [QpState.RESET, FREE],
      [QpState.ERR, FREE],
    ]),
  ],
]);

/**
 * ib_modify_qp_is_ok() for an RC QP: a mask naming IBV_QP_CUR_STATE outside
 * RTR/RTS/SQD/SQE, a transition not in the table, a required attribute
 * missing or an attribute the transition does not take all fail. Returns
 * the reason, or undefined when the modify is allowed.
 */
export function modifyQpRejection(cur: QpState, next: QpState, mask: number): string | undefined {
  if (
    (mask & IBV_QP_CUR_STATE) !== 0 &&
    cur !== QpState.RTR &&
    cur !== QpState.RTS &&
    cur !== QpState.SQD &&
    cur !== QpState.SQE
  ) {
    return `IBV_QP_CUR_STATE is not allowed from ${qpStateName(cur)}`;
  }
  const transition = RC_TABLE.get(cur)?.get(next);
  if (transition === undefined) {
    return `${qpStateName(cur)} -> ${qpStateName(next)} is not a valid RC QP transition`;
  }
  const missing = transition.req & ~mask;
  if (missing !== 0) {
    return `${qpStateName(cur)} -> ${qpStateName(next)} requires attribute mask 0x${missing.toString(16)}`;
  }
  const extra = mask & ~(transition.req | transition.opt | IBV_QP_STATE);
  if (extra !== 0) {
    return `${qpStateName(cur)} -> ${qpStateName(next)} does not take attribute mask 0x${extra.toString(16)}`;
  }
  return undefined;
}

const NAMES: Readonly<Record<QpState, string>> = {
  [QpState.RESET]: 'RESET',
  [QpState.INIT]: 'INIT',
  [QpState.RTR]: 'RTR',
  [QpState.RTS]: 'RTS',
  [QpState.SQD]: 'SQD',
  [QpState.SQE]: 'SQE',
  [QpState.ERR]: 'ERR',
};

export function qpStateName(state: QpState): string {
  return NAMES[state];
}
