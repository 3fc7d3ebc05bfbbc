import { expect } from 'chai';
import { NVME_ADMIN_CREATE_SQ, NVME_CMD_WRITE, NVME_CMD_WRITE_ZEROES } from './nvme-command';
import { nvmeOpcodeName, nvmeStatusName } from './nvme-names';
import { NVME_SC_DATA_XFER_ERROR, NVME_SC_LBA_RANGE, NVME_SC_QID_INVALID, NVME_SC_SUCCESS, nvmeInvalid } from './nvme-status';

describe('nvme names for metrics and logs', () => {
  it('names an opcode by its command set: 01h is Create I/O SQ on the admin queue, Write on an I/O queue', () => {
    expect(nvmeOpcodeName('admin', NVME_ADMIN_CREATE_SQ)).to.equal('Create I/O SQ');
    expect(nvmeOpcodeName('io', NVME_CMD_WRITE)).to.equal('Write');
    expect(nvmeOpcodeName('io', NVME_CMD_WRITE_ZEROES)).to.equal('Write Zeroes');
  });

  it('names an opcode the specification does not by its hex byte', () => {
    expect(nvmeOpcodeName('io', 0x7f)).to.equal('0x7f');
    expect(nvmeOpcodeName('admin', 0x03)).to.equal('0x03');
  });

  it('names a status by its code type and code, DNR dropped', () => {
    expect(nvmeStatusName(NVME_SC_SUCCESS)).to.equal('SUCCESS');
    expect(nvmeStatusName(nvmeInvalid(NVME_SC_LBA_RANGE))).to.equal('LBA_OUT_OF_RANGE');
    expect(nvmeStatusName(NVME_SC_DATA_XFER_ERROR)).to.equal('DATA_TRANSFER_ERROR');
    expect(nvmeStatusName(nvmeInvalid(NVME_SC_QID_INVALID))).to.equal('INVALID_QUEUE_IDENTIFIER');
  });

  it('names a status the specification does not by its 11-bit hex value', () => {
    expect(nvmeStatusName(0x2ff)).to.equal('0x2ff');
  });
});
