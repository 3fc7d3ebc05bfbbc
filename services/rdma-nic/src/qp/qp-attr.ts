import { errno } from '@p2p/errno';
import { QP_ACCESS_FLAGS_MASK } from '../verbs/access-flags';
import { QpState } from '../verbs/enums';
import {
  IBV_QP_ACCESS_FLAGS,
  IBV_QP_AV,
  IBV_QP_CUR_STATE,
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
  IBV_QP_TIMEOUT,
} from '../verbs/qp-attr-mask';

/** struct ibv_qp_attr, the RC fields; `dgid` stands for ah_attr (the peer NIC's GID). */
export interface QpAttr {
  qpState: QpState;
  curQpState: QpState;
  enSqdAsyncNotify: boolean;
  qpAccessFlags: number;
  pkeyIndex: number;
  portNum: number;
  dgid: string;
  pathMtu: number;
  timeout: number;
  retryCnt: number;
  rnrRetry: number;
  rqPsn: number;
  sqPsn: number;
  maxRdAtomic: number;
  maxDestRdAtomic: number;
  minRnrTimer: number;
  destQpNum: number;
}

/** The attributes of a QP fresh from RESET. */
export function resetAttr(): QpAttr {
  return {
    qpState: QpState.RESET,
    curQpState: QpState.RESET,
    enSqdAsyncNotify: false,
    qpAccessFlags: 0,
    pkeyIndex: 0,
    portNum: 0,
    dgid: '',
    pathMtu: 0,
    timeout: 0,
    retryCnt: 0,
    rnrRetry: 0,
    rqPsn: 0,
    sqPsn: 0,
    maxRdAtomic: 0,
    maxDestRdAtomic: 0,
    minRnrTimer: 0,
    destQpNum: 0,
  };
}

/** ibv_device_attr.max_qp_rd_atom / max_qp_init_rd_atom of the model device. */
export const MAX_RD_ATOMIC = 16;
/** The model NIC's one port. */
export const PORT_NUM = 1;
/** The model NIC's P_Key table length. */
export const PKEY_TABLE_LEN = 1;

interface Range {
  readonly bit: number;
  readonly field: keyof QpAttr;
  readonly min: number;
  readonly max: number;
}

/** Field ranges providers enforce (mlx5/kernel: 3-bit retry counts, 5-bit timers, IBV_MTU_256..4096, 24-bit PSNs and QPNs). */
const RANGES: readonly Range[] = [
  { bit: IBV_QP_PORT, field: 'portNum', min: PORT_NUM, max: PORT_NUM },
  { bit: IBV_QP_PKEY_INDEX, field: 'pkeyIndex', min: 0, max: PKEY_TABLE_LEN - 1 },
  { bit: IBV_QP_PATH_MTU, field: 'pathMtu', min: 1, max: 5 },
  { bit: IBV_QP_TIMEOUT, field: 'timeout', min: 0, max: 31 },
  { bit: IBV_QP_RETRY_CNT, field: 'retryCnt', min: 0, max: 7 },
  { bit: IBV_QP_RNR_RETRY, field: 'rnrRetry', min: 0, max: 7 },
  { bit: IBV_QP_MIN_RNR_TIMER, field: 'minRnrTimer', min: 0, max: 31 },
  { bit: IBV_QP_RQ_PSN, field: 'rqPsn', min: 0, max: 0xffffff },
  { bit: IBV_QP_SQ_PSN, field: 'sqPsn', min: 0, max: 0xffffff },
  { bit: IBV_QP_MAX_QP_RD_ATOMIC, field: 'maxRdAtomic', min: 0, max: MAX_RD_ATOMIC },
  { bit: IBV_QP_MAX_DEST_RD_ATOMIC, field: 'maxDestRdAtomic', min: 0, max: MAX_RD_ATOMIC },
  { bit: IBV_QP_DEST_QPN, field: 'destQpNum', min: 1, max: 0xffffff },
];

/** The values named by `mask` are in range; EINVAL otherwise (the provider's modify_qp checks). */
export function checkAttrValues(attr: Partial<QpAttr>, mask: number, cur: QpState): void {
  for (const range of RANGES) {
    if ((mask & range.bit) === 0) {
      continue;
    }
    const value = attr[range.field] ?? 0;
    if (typeof value !== 'number' || !Number.isInteger(value) || value < range.min || value > range.max) {
      throw errno('EINVAL', `${range.field} ${String(value)} is outside ${range.min}..${range.max}`);
    }
  }
  if ((mask & IBV_QP_ACCESS_FLAGS) !== 0 && ((attr.qpAccessFlags ?? 0) & ~QP_ACCESS_FLAGS_MASK) !== 0) {
    throw errno('EINVAL', `qp_access_flags 0x${(attr.qpAccessFlags ?? 0).toString(16)} has flags a QP does not take`);
  }
  if ((mask & IBV_QP_CUR_STATE) !== 0 && attr.curQpState !== cur) {
    throw errno('EINVAL', `cur_qp_state ${String(attr.curQpState)} is not the QP's state ${cur}`);
  }
}

/** Copy the fields named by `mask` into the QP's attributes. */
export function applyAttr(into: QpAttr, attr: Partial<QpAttr>, mask: number): void {
  for (const range of RANGES) {
    if ((mask & range.bit) !== 0) {
      (into[range.field] as number) = (attr[range.field] as number | undefined) ?? 0;
    }
  }
  if ((mask & IBV_QP_ACCESS_FLAGS) !== 0) {
    into.qpAccessFlags = attr.qpAccessFlags ?? 0;
  }
  if ((mask & IBV_QP_AV) !== 0) {
    into.dgid = attr.dgid ?? '';
  }
}
