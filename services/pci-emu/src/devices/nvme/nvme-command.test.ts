import { expect } from 'chai';
import { decodeNvmeCommand, encodeNvmeCommand, NVME_CMD_READ, NVME_SQE_SIZE } from './nvme-command';
import { decodeNvmeCompletion, encodeNvmeCompletion, NVME_CQE_SIZE } from './nvme-completion';
import { NVME_SC_DNR, NVME_SC_LBA_RANGE } from './nvme-status';

describe('nvme queue entries', () => {
  it('encodes a 64-byte submission queue entry in the layout of struct nvme_common_command', () => {
    const sqe = encodeNvmeCommand({ opcode: NVME_CMD_READ, flags: 0x40, commandId: 0xbeef, nsid: 7, prp1: 0x1122_3344_5566_7788n, prp2: 0x99n, cdw10: 1, cdw15: 0xffffffff });
    expect(sqe).to.have.length(NVME_SQE_SIZE);
    expect([sqe[0], sqe[1], sqe.readUInt16LE(2), sqe.readUInt32LE(4)]).to.deep.equal([NVME_CMD_READ, 0x40, 0xbeef, 7]);
    expect([sqe.readBigUInt64LE(0x18), sqe.readBigUInt64LE(0x20)]).to.deep.equal([0x1122_3344_5566_7788n, 0x99n]);
    expect([sqe.readUInt32LE(0x28), sqe.readUInt32LE(0x3c)]).to.deep.equal([1, 0xffffffff]);
  });

  it('decodes what it encodes', () => {
    const fields = { opcode: 0x81, flags: 0, commandId: 3, nsid: 1, metadata: 5n, prp1: 6n, prp2: 7n, cdw10: 8, cdw11: 9, cdw12: 10, cdw13: 11, cdw14: 12, cdw15: 13 };
    expect(decodeNvmeCommand(encodeNvmeCommand(fields))).to.deep.equal(fields);
  });

  it('puts the phase tag in bit 0 of the status word and the Status Field above it', () => {
    const completion = { result: 0x1234, sqHead: 5, sqId: 2, commandId: 9, status: NVME_SC_LBA_RANGE | NVME_SC_DNR, phase: true };
    const cqe = encodeNvmeCompletion(completion);
    expect(cqe).to.have.length(NVME_CQE_SIZE);
    expect(cqe.readUInt16LE(14)).to.equal(((NVME_SC_LBA_RANGE | NVME_SC_DNR) << 1) | 1);
    expect(decodeNvmeCompletion(cqe)).to.deep.equal(completion);
  });
});
