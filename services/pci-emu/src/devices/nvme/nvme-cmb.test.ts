import { expect } from 'chai';
import { NVME_ADMIN_CREATE_CQ, NVME_ADMIN_CREATE_SQ, NVME_ADMIN_IDENTIFY, NVME_CMD_READ, NVME_CMD_WRITE, NVME_SQE_SIZE } from './nvme-command';
import { NVME_CQE_SIZE } from './nvme-completion';
import { NVME_ID_CNS_CTRL } from './nvme-identify';
import {
  NVME_CMB_SUPPORT_ALL,
  NVME_CMBMSC_CMSE,
  NVME_CMBMSC_CRE,
  NVME_CMBSTS_CBAI,
  NVME_CSTS_CFS,
  nvmeCmbloc,
  nvmeCmbsz,
  type NvmeCmbSupport,
} from './nvme-regs';
import { NVME_SC_CMB_INVALID_USE, NVME_SC_DATA_XFER_ERROR, NVME_SC_DNR, NVME_SC_SUCCESS } from './nvme-status';
import { CMB_BAR, CMB_BASE, CMB_SIZE, IDENTITY, NvmeTestHost, PAGE } from './testing/nvme-test-host';

const INVALID_USE = NVME_SC_CMB_INVALID_USE | NVME_SC_DNR;
const pattern = (length: number): Buffer => Buffer.from(Array.from({ length }, (_, i) => (i * 7) % 256));

/** A controller with CMB support `support`, enabled, its CMB on at CMB_BASE, and I/O queue pair 1 in host memory. */
function cmbHost(support: Partial<NvmeCmbSupport> = {}): NvmeTestHost {
  const host = NvmeTestHost.ready({ cmbSupport: { ...NVME_CMB_SUPPORT_ALL, ...support } });
  host.enableCmb();
  return host;
}

const forgetAccesses = (host: NvmeTestHost): void => void Object.assign(host.bus.accesses, { read: 0, write: 0, map: 0 });

describe('nvme controller memory buffer', () => {
  it('reads CMBLOC and CMBSZ as 0 until CMBMSC.CRE is set', () => {
    const { controller } = new NvmeTestHost();
    expect([controller.cmbloc, controller.cmbsz]).to.deep.equal([0, 0]);
    controller.writeCmbmsc(NVME_CMBMSC_CRE);
    expect([controller.cmbloc, controller.cmbsz]).to.deep.equal([nvmeCmbloc(CMB_BAR), nvmeCmbsz(CMB_SIZE, NVME_CMB_SUPPORT_ALL)]);
    expect(controller.cmbmsc).to.equal(NVME_CMBMSC_CRE);
  });

  it('sets CMBSTS.CBAI and keeps addresses off the CMB for a CBA whose range passes 2^64, until a valid CBA', () => {
    const host = NvmeTestHost.ready();
    const cba = 0xffff_ffff_fff8_0000n;
    host.controller.writeCmbmsc(NVME_CMBMSC_CRE | NVME_CMBMSC_CMSE | cba);
    expect(host.controller.cmbsts).to.equal(NVME_CMBSTS_CBAI);
    expect(host.run(1, { opcode: NVME_CMD_READ, nsid: 1, prp1: cba }).status, 'the address went onto the bus').to.equal(NVME_SC_DATA_XFER_ERROR);
    host.enableCmb();
    expect(host.controller.cmbsts).to.equal(0);
  });

  it('runs an I/O queue pair and its data in the CMB without a single bus access', () => {
    const host = cmbHost();
    host.createQueuePair(2, 16, { sq: host.allocCmb(16 * NVME_SQE_SIZE), cq: host.allocCmb(16 * NVME_CQE_SIZE) });
    expect(host.events).to.deep.include({ kind: 'queue-created', queue: 'sq', qid: 2, entries: 16, location: 'cmb' });
    const data = pattern(2 * PAGE);
    const source = host.allocCmb(2 * PAGE);
    host.poke(source, data);
    forgetAccesses(host);
    expect(host.run(2, { opcode: NVME_CMD_WRITE, nsid: 1, ...host.prps(source, data.length, host.allocCmb(PAGE)), cdw12: 15 }).status).to.equal(NVME_SC_SUCCESS);
    const target = host.allocCmb(2 * PAGE);
    expect(host.run(2, { opcode: NVME_CMD_READ, nsid: 1, prp1: target, prp2: target + BigInt(PAGE), cdw12: 15 }).status).to.equal(NVME_SC_SUCCESS);
    expect(host.ns1.data.subarray(0, data.length)).to.deep.equal(data);
    expect(host.peek(target, data.length)).to.deep.equal(data);
    expect(host.bus.accesses).to.deep.equal({ read: 0, write: 0, map: 0 });
  });

  it('mixes CMB and host memory in one command', () => {
    const host = cmbHost();
    const data = pattern(PAGE + 512);
    const first = host.alloc(PAGE);
    const second = host.allocCmb(PAGE);
    host.poke(first, data.subarray(0, PAGE));
    host.poke(second, data.subarray(PAGE));
    expect(host.run(1, { opcode: NVME_CMD_WRITE, nsid: 1, prp1: first, prp2: second, cdw12: 8 }).status).to.equal(NVME_SC_SUCCESS);
    expect(host.ns1.data.subarray(0, data.length)).to.deep.equal(data);
  });

  it('sends an address in the CMB window onto the bus while CMBMSC.CMSE is clear', () => {
    const host = NvmeTestHost.ready();
    host.controller.writeCmbmsc(NVME_CMBMSC_CRE | CMB_BASE);
    forgetAccesses(host);
    expect(host.run(1, { opcode: NVME_CMD_READ, nsid: 1, prp1: CMB_BASE }).status).to.equal(NVME_SC_DATA_XFER_ERROR);
    expect(host.bus.accesses.map).to.equal(1);
  });

  for (const [what, support, command] of [
    ['an I/O submission queue where CMBSZ.SQS is clear', { submissionQueues: false }, (host: NvmeTestHost) => ({ opcode: NVME_ADMIN_CREATE_SQ, prp1: host.allocCmb(PAGE), cdw10: (15 << 16) | 2, cdw11: (1 << 16) | 1 })],
    ['an I/O completion queue where CMBSZ.CQS is clear', { completionQueues: false }, (host: NvmeTestHost) => ({ opcode: NVME_ADMIN_CREATE_CQ, prp1: host.allocCmb(PAGE), cdw10: (15 << 16) | 2, cdw11: 1 })],
    [
      'a queue that runs past the end of the CMB',
      {},
      () => ({ opcode: NVME_ADMIN_CREATE_CQ, prp1: CMB_BASE + BigInt(CMB_SIZE - PAGE), cdw10: ((2 * PAGE) / NVME_CQE_SIZE - 1) << 16 | 2, cdw11: 1 }),
    ],
    ['Identify data where CMBSZ.RDS is clear', { readData: false }, (host: NvmeTestHost) => ({ opcode: NVME_ADMIN_IDENTIFY, prp1: host.allocCmb(PAGE), cdw10: NVME_ID_CNS_CTRL })],
  ] as const) {
    it(`refuses ${what} with Invalid Use of Controller Memory Buffer`, () => {
      const host = cmbHost(support);
      expect(host.adminStatus(command(host))).to.equal(INVALID_USE);
    });
  }

  for (const [what, support, opcode, where] of [
    ['Read data where CMBSZ.RDS is clear', { readData: false }, NVME_CMD_READ, 'data'],
    ['Write data where CMBSZ.WDS is clear', { writeData: false }, NVME_CMD_WRITE, 'data'],
    ['a PRP list where CMBSZ.LISTS is clear', { prpLists: false }, NVME_CMD_WRITE, 'list'],
  ] as const) {
    it(`refuses ${what} with Invalid Use of Controller Memory Buffer, moving nothing`, () => {
      const host = cmbHost(support);
      host.ns1.data.fill(0x5a);
      const buffer = where === 'data' ? host.allocCmb(PAGE) : host.alloc(3 * PAGE);
      const prps = where === 'data' ? { prp1: buffer } : host.prps(buffer, 3 * PAGE, host.allocCmb(PAGE));
      expect(host.run(1, { opcode, nsid: 1, ...prps, cdw12: where === 'data' ? 7 : 23 }).status).to.equal(INVALID_USE);
      expect(host.ns1.data.every((b) => b === 0x5a)).to.equal(true);
    });
  }

  it('reads Identify data into the CMB when CMBSZ.RDS is set', () => {
    const host = cmbHost();
    const target = host.allocCmb(PAGE);
    expect(host.adminStatus({ opcode: NVME_ADMIN_IDENTIFY, prp1: target, cdw10: NVME_ID_CNS_CTRL })).to.equal(NVME_SC_SUCCESS);
    expect(host.peek(target + 4n, 20).toString('latin1')).to.equal(IDENTITY.serialNumber.padEnd(20));
  });

  it('sets CSTS.CFS when enabled with the admin submission queue in the CMB and CMBSZ.SQS clear', () => {
    const host = new NvmeTestHost({ cmbSupport: { ...NVME_CMB_SUPPORT_ALL, submissionQueues: false } });
    host.enableCmb();
    expect(host.enable({ asq: host.allocCmb(PAGE) })).to.equal(NVME_CSTS_CFS);
  });
});
