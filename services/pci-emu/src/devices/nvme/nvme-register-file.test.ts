import { expect } from 'chai';
import { HeapBarMemory } from '../heap-bar-memory';
import { HeapNamespaceStore } from './namespace-heap';
import { NvmeController } from './nvme-controller';
import type { NvmeEvent } from './nvme-events';
import { NvmeRegisterFile } from './nvme-register-file';
import {
  NVME_CAP,
  NVME_CC_NVM_ENABLE,
  NVME_CMBMSC_CRE,
  NVME_CSTS_RDY,
  NVME_REG_ACQ,
  NVME_REG_AQA,
  NVME_REG_ASQ,
  NVME_REG_CAP,
  NVME_REG_CC,
  NVME_REG_CMBLOC,
  NVME_REG_CMBMSC,
  NVME_REG_CMBSZ,
  NVME_REG_CSTS,
  NVME_REG_INTMC,
  NVME_REG_INTMS,
  NVME_REG_VS,
  NVME_VS_1_4,
} from './nvme-regs';
import { CMB_BAR, CMB_SIZE, FakeBus, IDENTITY } from './testing/nvme-test-host';

const ALL = 0xffffffff;

function registerFile(): { regs: NvmeRegisterFile; controller: NvmeController; doorbells: HeapBarMemory; bus: FakeBus; events: NvmeEvent[] } {
  const bus = new FakeBus();
  const events: NvmeEvent[] = [];
  const controller = new NvmeController({
    port: bus,
    cmb: new HeapBarMemory(CMB_SIZE),
    cmbBar: CMB_BAR,
    namespaces: [new HeapNamespaceStore(64, 512)],
    identity: IDENTITY,
    observer: (event) => events.push(event),
  });
  const doorbells = new HeapBarMemory(4096);
  return { regs: new NvmeRegisterFile(controller, doorbells), controller, doorbells, bus, events };
}

describe('nvme register file (BAR0 0x00 - 0xfff)', () => {
  it('reads CAP as two dwords and VS 1.4', () => {
    const { regs } = registerFile();
    expect((BigInt(regs.read(NVME_REG_CAP + 4)) << 32n) | BigInt(regs.read(NVME_REG_CAP))).to.equal(NVME_CAP);
    expect(regs.read(NVME_REG_VS)).to.equal(NVME_VS_1_4);
  });

  it('assembles ASQ and ACQ from their dwords, and enables the controller with CC', () => {
    const { regs, controller } = registerFile();
    regs.write(NVME_REG_AQA, 0x001f001f, ALL);
    regs.write(NVME_REG_ASQ, 0x0001_0000, ALL);
    regs.write(NVME_REG_ASQ + 4, 0x1, ALL);
    regs.write(NVME_REG_ACQ, 0x0002_0000, ALL);
    expect([controller.asq, controller.acq]).to.deep.equal([0x1_0001_0000n, 0x2_0000n]);
    regs.write(NVME_REG_CC, NVME_CC_NVM_ENABLE, ALL);
    expect(regs.read(NVME_REG_CSTS) & NVME_CSTS_RDY).to.equal(NVME_CSTS_RDY);
    expect(regs.read(NVME_REG_CC)).to.equal(NVME_CC_NVM_ENABLE);
  });

  it('applies only the written byte lanes of CC and INTMS/INTMC', () => {
    const { regs } = registerFile();
    regs.write(NVME_REG_CC, 0x00460000, ALL);
    regs.write(NVME_REG_CC, 0, 0x000000ff);
    expect(regs.read(NVME_REG_CC)).to.equal(0x00460000);
    regs.write(NVME_REG_INTMS, 0x0000f00f, ALL);
    regs.write(NVME_REG_INTMC, 0xffffffff, 0x000000ff);
    expect([regs.read(NVME_REG_INTMS), regs.read(NVME_REG_INTMC)]).to.deep.equal([0x0000f000, 0x0000f000]);
  });

  it('hides CMBLOC and CMBSZ until CMBMSC.CRE is written, as NVMe 1.4 requires', () => {
    const { regs } = registerFile();
    expect([regs.read(NVME_REG_CMBLOC), regs.read(NVME_REG_CMBSZ)]).to.deep.equal([0, 0]);
    regs.write(NVME_REG_CMBMSC, Number(NVME_CMBMSC_CRE), ALL);
    expect(regs.read(NVME_REG_CMBLOC) & 0x7).to.equal(CMB_BAR);
    expect(regs.read(NVME_REG_CMBSZ)).to.not.equal(0);
  });

  it('ignores writes to CAP, VS and CSTS', () => {
    const { regs } = registerFile();
    for (const offset of [NVME_REG_CAP, NVME_REG_CAP + 4, NVME_REG_VS, NVME_REG_CSTS]) {
      const before = regs.read(offset);
      regs.write(offset, ~before >>> 0, ALL);
      expect(regs.read(offset), `0x${offset.toString(16)}`).to.equal(before);
    }
  });

  it('resets the controller and zeroes the doorbell window (FLR, D3hot -> D0)', () => {
    const { regs, controller, doorbells } = registerFile();
    regs.write(NVME_REG_AQA, 0x001f001f, ALL);
    regs.write(NVME_REG_INTMS, 1, ALL);
    doorbells.write(0, Buffer.from([1, 0, 0, 0]));
    regs.reset();
    expect([controller.aqa, regs.read(NVME_REG_INTMS), doorbells.read(0, 4).readUInt32LE(0)]).to.deep.equal([0, 0, 0]);
  });
});
