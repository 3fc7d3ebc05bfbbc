import { expect } from 'chai';
import { IBV_SEND_SIGNALED } from '../verbs/send-flags';
import { WcOpcode, WcStatus, WrOpcode } from '../verbs/enums';
import { REFETCH, RNR_NAK } from './fabric';
import { judgeAnswer, recvCompletion, sendCompletion } from './completer';

describe('the completer (rxe_comp.c)', () => {
  it('judges an answer: retransmit until retry_cnt, then RETRY_EXC_ERR; RNR; REFETCH, whatever the retries spent; land an ACK; complete a NAK with its status', () => {
    expect(judgeAnswer(undefined, 0, 7)).to.deep.equal({ action: 'retransmit' });
    expect(judgeAnswer(undefined, 7, 7)).to.deep.equal({ action: 'complete', status: WcStatus.RETRY_EXC_ERR });
    expect(judgeAnswer({ status: RNR_NAK, rnrTimer: 12 }, 0, 7)).to.deep.equal({ action: 'rnr' });
    expect(judgeAnswer({ status: REFETCH }, 7, 7)).to.deep.equal({ action: 'refetch' });
    expect(judgeAnswer({ status: WcStatus.SUCCESS }, 0, 7)).to.deep.equal({ action: 'land' });
    expect(judgeAnswer({ status: WcStatus.REM_ACCESS_ERR }, 0, 7)).to.deep.equal({ action: 'complete', status: WcStatus.REM_ACCESS_ERR });
  });

  it('writes a send CQE for errors always, for success only when signaled; byte_len by the opcode table', () => {
    const read = { wrId: 5n, opcode: WrOpcode.RDMA_READ, sgList: [{ addr: 0, length: 100, lkey: 1 }, { addr: 100, length: 28, lkey: 1 }], sendFlags: 0 };
    expect(sendCompletion(read, WcStatus.SUCCESS, 0x101, false)).to.equal(undefined);
    expect(sendCompletion(read, WcStatus.SUCCESS, 0x101, true)).to.include({ opcode: WcOpcode.RDMA_READ, byteLen: 128 });
    expect(sendCompletion(read, WcStatus.WR_FLUSH_ERR, 0x101, false)).to.include({ status: WcStatus.WR_FLUSH_ERR, byteLen: 0 });
    const atomic = { ...read, opcode: WrOpcode.ATOMIC_FETCH_AND_ADD, sendFlags: IBV_SEND_SIGNALED };
    expect(sendCompletion(atomic, WcStatus.SUCCESS, 0x101, false)).to.include({ opcode: WcOpcode.FETCH_ADD, byteLen: 8 });
    expect(recvCompletion({ wrId: 1n, sgList: [] }, WcStatus.LOC_LEN_ERR, WcOpcode.RECV, 64, false, 0, 0x101, 0x202)).to.include({ byteLen: 0, srcQp: 0 });
  });
});
