import { expect } from 'chai';
import { IBV_ACCESS_REMOTE_ATOMIC, IBV_ACCESS_REMOTE_READ, IBV_ACCESS_REMOTE_WRITE } from '../verbs/access-flags';
import { WcOpcode, WrOpcode } from '../verbs/enums';
import { WireOp } from './fabric';
import { WIRE_OPS, WR_OPCODES, wrOpcode } from './opcodes';

describe('the opcode tables (rxe_opcode.c)', () => {
  it('has a row for every RC work request opcode, and refuses anything else', () => {
    expect(Object.keys(WR_OPCODES).map(Number).sort()).to.deep.equal(Object.values(WrOpcode).sort());
    for (const bad of [0, 8, 99, -1, 1.5]) expect(wrOpcode(bad), `opcode ${bad}`).to.equal(undefined);
  });

  it('maps work requests to packets and completions as verbs does', () => {
    const rows = Object.values(WR_OPCODES).map((row) => [row.name, WIRE_OPS[row.wireOp].name, row.wcOpcode, row.withImm]);
    expect(rows).to.deep.equal([
      ['RDMA_WRITE', 'RDMA_WRITE', WcOpcode.RDMA_WRITE, false],
      ['RDMA_WRITE_WITH_IMM', 'RDMA_WRITE', WcOpcode.RDMA_WRITE, true],
      ['SEND', 'SEND', WcOpcode.SEND, false],
      ['SEND_WITH_IMM', 'SEND', WcOpcode.SEND, true],
      ['RDMA_READ', 'RDMA_READ', WcOpcode.RDMA_READ, false],
      ['ATOMIC_CMP_AND_SWP', 'CMP_SWAP', WcOpcode.COMP_SWAP, false],
      ['ATOMIC_FETCH_AND_ADD', 'FETCH_ADD', WcOpcode.FETCH_ADD, false],
    ]);
  });

  it('says of each packet what the responder checks: the access it needs, payload one way, data the other', () => {
    expect(WIRE_OPS[WireOp.RDMA_WRITE]).to.include({ qpAccess: IBV_ACCESS_REMOTE_WRITE, payload: true, readLike: false });
    expect(WIRE_OPS[WireOp.RDMA_READ]).to.include({ qpAccess: IBV_ACCESS_REMOTE_READ, payload: false, readLike: true, atomic: false });
    for (const op of [WireOp.CMP_SWAP, WireOp.FETCH_ADD]) expect(WIRE_OPS[op]).to.include({ qpAccess: IBV_ACCESS_REMOTE_ATOMIC, readLike: true, atomic: true });
    expect(WIRE_OPS[WireOp.SEND]).to.include({ qpAccess: 0, mrAccess: 0, payload: true });
    for (const row of Object.values(WIRE_OPS)) expect(row.payload && row.readLike, row.name).to.equal(false);
  });
});
