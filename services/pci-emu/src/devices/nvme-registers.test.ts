import { expect } from 'chai';
import {
  NVME_CC_ENABLE,
  NVME_CMBSZ_RDS,
  NVME_CMBSZ_SQS,
  NVME_CMBSZ_WDS,
  NVME_CSTS_RDY,
  NVME_CSTS_SHST_CMPLT,
  NVME_REG_ACQ,
  NVME_REG_AQA,
  NVME_REG_ASQ,
  NVME_REG_CAP,
  NVME_REG_CC,
  NVME_REG_CMBLOC,
  NVME_REG_CMBSZ,
  NVME_REG_CSTS,
  NVME_REG_DBS,
  NVME_REG_INTMC,
  NVME_REG_INTMS,
  NVME_REG_VS,
  NVME_VS_1_3,
  NvmeRegisters,
  nvmeCmbSize,
} from './nvme-registers';

const ALL = 0xffffffff;

describe('nvme registers', () => {
  it('sets CSTS.RDY on CC.EN 0->1 and clears it on 1->0', () => {
    const regs = new NvmeRegisters(2, 2 ** 24);
    expect(regs.read(NVME_REG_CSTS)).to.equal(0);
    regs.write(NVME_REG_CC, 0x00460001, ALL);
    expect(regs.read(NVME_REG_CC)).to.equal(0x00460001);
    expect(regs.read(NVME_REG_CSTS)).to.equal(NVME_CSTS_RDY);
    regs.write(NVME_REG_CC, 0x00464001, ALL);
    expect(regs.read(NVME_REG_CSTS)).to.equal(NVME_CSTS_RDY | NVME_CSTS_SHST_CMPLT, 'normal shutdown completes at once');
    regs.write(NVME_REG_CC, 0x00460000, ALL);
    expect(regs.read(NVME_REG_CSTS)).to.equal(0);
  });

  it('applies only the written byte lanes', () => {
    const regs = new NvmeRegisters(2, 2 ** 24);
    regs.write(NVME_REG_CC, 0x00460000, ALL);
    regs.write(NVME_REG_CC, NVME_CC_ENABLE, 0x000000ff);
    expect(regs.read(NVME_REG_CC)).to.equal(0x00460001);
    regs.write(NVME_REG_INTMS, 0x0000f00f, ALL);
    regs.write(NVME_REG_INTMC, 0xffffffff, 0x000000ff);
    expect(regs.read(NVME_REG_INTMS)).to.equal(0x0000f000, 'INTMC clears only bits written 1 in enabled lanes');
    expect(regs.read(NVME_REG_INTMC)).to.equal(0x0000f000);
  });

  it('advertises a 1.3 controller with the CMB in BAR2', () => {
    const regs = new NvmeRegisters(2, 2 ** 24);
    expect(regs.read(NVME_REG_VS)).to.equal(NVME_VS_1_3);
    expect(regs.read(NVME_REG_CAP) & 0xffff).to.equal(0x3ff, 'MQES');
    expect(regs.read(NVME_REG_CAP + 4) & 0xf).to.equal(0, 'DSTRD 0');
    expect(regs.read(NVME_REG_CMBLOC)).to.equal(2, 'BIR 2, offset 0');
    const cmbsz = regs.read(NVME_REG_CMBSZ);
    expect(cmbsz & 0xff).to.equal(NVME_CMBSZ_SQS | NVME_CMBSZ_RDS | NVME_CMBSZ_WDS);
    expect((cmbsz >>> 8) & 0xf).to.equal(3, 'SZU 16 MiB');
    expect(cmbsz >>> 12).to.equal(1, 'SZ 1 unit');
    expect(nvmeCmbSize(2 ** 32) >>> 8 & 0xf).to.equal(5, '4 GiB in 4 GiB units');
    expect(nvmeCmbSize(3 * 2 ** 16) >>> 12).to.equal(3, '192 KiB as 3 x 64 KiB');
  });

  it('ignores writes to read-only registers and keeps queue bases aligned', () => {
    const regs = new NvmeRegisters(2, 2 ** 24);
    for (const offset of [NVME_REG_CAP, NVME_REG_VS, NVME_REG_CSTS, NVME_REG_CMBLOC, NVME_REG_CMBSZ]) {
      const before = regs.read(offset);
      regs.write(offset, ~before >>> 0, ALL);
      expect(regs.read(offset)).to.equal(before);
    }
    regs.write(NVME_REG_AQA, 0xffffffff, ALL);
    regs.write(NVME_REG_ASQ, 0x12345678, ALL);
    regs.write(NVME_REG_ASQ + 4, 0x9, ALL);
    regs.write(NVME_REG_ACQ, 0xfffff123, ALL);
    expect([regs.read(NVME_REG_AQA), regs.read(NVME_REG_ASQ), regs.read(NVME_REG_ASQ + 4), regs.read(NVME_REG_ACQ)]).to.deep.equal([
      0x0fff0fff, 0x12345000, 0x9, 0xfffff000,
    ]);
    regs.write(NVME_REG_DBS, 7, ALL);
    expect(regs.read(NVME_REG_DBS)).to.equal(0, 'doorbells are write-only');
    regs.reset();
    expect(regs.read(NVME_REG_AQA) | regs.read(NVME_REG_ASQ) | regs.read(NVME_REG_CC)).to.equal(0);
  });
});
