import { expect } from 'chai';
import { ErrnoError } from '@p2p/errno';
import {
  NVME_CMB_SUPPORT_ALL,
  NVME_CMBLOC_CDPCILS,
  NVME_CMBLOC_CDPMLS,
  NVME_CMBLOC_CQMMS,
  NVME_CMBSZ_RDS,
  NVME_CMBSZ_SQS,
  NVME_CMBSZ_WDS,
  NVME_REG_DBS,
  nvmeCmbloc,
  nvmeCmbsz,
  nvmeDoorbellIndex,
} from './nvme-regs';

describe('nvme register values', () => {
  it('expresses the CMB size in the largest CMBSZ unit that holds it exactly', () => {
    const cmbsz = nvmeCmbsz(16 * 2 ** 20, NVME_CMB_SUPPORT_ALL);
    expect([cmbsz & 0x1f, (cmbsz >>> 8) & 0xf, cmbsz >>> 12]).to.deep.equal([0x1f, 3, 1], 'all uses, SZU 16 MiB, SZ 1');
    expect(nvmeCmbsz(3 * 4096, NVME_CMB_SUPPORT_ALL) >>> 8).to.equal(3 << 4, 'SZU 4 KiB, SZ 3');
  });

  it('advertises only the CMB uses it supports', () => {
    const support = { ...NVME_CMB_SUPPORT_ALL, completionQueues: false, prpLists: false };
    expect(nvmeCmbsz(2 ** 20, support) & 0x1f).to.equal(NVME_CMBSZ_SQS | NVME_CMBSZ_RDS | NVME_CMBSZ_WDS);
  });

  it('refuses a CMB size no CMBSZ unit expresses', () => {
    expect(() => nvmeCmbsz(1000, NVME_CMB_SUPPORT_ALL)).to.throw(ErrnoError, /not expressible/);
  });

  it('locates the CMB at offset 0 of its BAR, mixing CMB and host memory freely', () => {
    expect(nvmeCmbloc(2)).to.equal(2 | NVME_CMBLOC_CQMMS | NVME_CMBLOC_CDPMLS | NVME_CMBLOC_CDPCILS);
  });

  it('maps doorbell offsets to slots with the doorbell stride', () => {
    expect([nvmeDoorbellIndex(NVME_REG_DBS), nvmeDoorbellIndex(NVME_REG_DBS + 4), nvmeDoorbellIndex(NVME_REG_DBS + 12)]).to.deep.equal([0, 1, 3]);
    expect([nvmeDoorbellIndex(NVME_REG_DBS + 8, 1), nvmeDoorbellIndex(NVME_REG_DBS + 4, 1)]).to.deep.equal([1, undefined]);
    expect(nvmeDoorbellIndex(0x14)).to.equal(undefined);
  });
});
