import { expect } from 'chai';
import { HeapNamespaceStore } from './namespace-heap';
import { NVME_ADMIN_GET_FEATURES, NVME_CMD_FLUSH, NVME_CMD_WRITE, NVME_SQE_SIZE } from './nvme-command';
import { NVME_COMMANDS_PER_TURN } from './nvme-controller';
import type { NvmeEvent } from './nvme-events';
import { NVME_FEAT_VOLATILE_WC } from './nvme-features';
import {
  NVME_CC_ENABLE,
  NVME_CC_MPS_SHIFT,
  NVME_CC_NVM_ENABLE,
  NVME_CC_SHN_NORMAL,
  NVME_CSTS_CFS,
  NVME_CSTS_RDY,
  NVME_CSTS_SHST_CMPLT,
  NVME_CSTS_SHST_OCCUR,
  NVME_VS_1_4,
} from './nvme-regs';
import { NVME_SC_SUCCESS } from './nvme-status';
import { ADMIN_ENTRIES, FAULT, NvmeTestHost, PAGE } from './testing/nvme-test-host';

const flush = { opcode: NVME_CMD_FLUSH, nsid: 1 };
const states = (events: NvmeEvent[]): string[] => events.flatMap((e) => (e.kind === 'state' ? [e.state] : []));
const commands = (events: NvmeEvent[]) => events.filter((e) => e.kind === 'command');

describe('nvme controller: bring-up, doorbells, turns and resets', () => {
  describe('bring-up', () => {
    it('reads CAP and VS as a 1.4 controller: MQES 1023, CQR, DSTRD 0, NVM command set, 4-64 KiB pages, CMBS', () => {
      const { controller } = new NvmeTestHost();
      const cap = controller.cap;
      expect(cap & 0xffffn).to.equal(1023n, 'MQES');
      expect((cap >> 16n) & 1n).to.equal(1n, 'CQR');
      expect((cap >> 32n) & 0xfn).to.equal(0n, 'DSTRD');
      expect((cap >> 37n) & 0xffn).to.equal(1n, 'CSS: NVM');
      expect([(cap >> 48n) & 0xfn, (cap >> 52n) & 0xfn]).to.deep.equal([0n, 4n], 'MPSMIN, MPSMAX');
      expect((cap >> 57n) & 1n).to.equal(1n, 'CMBS');
      expect(controller.vs).to.equal(NVME_VS_1_4);
      expect(controller.csts).to.equal(0);
    });

    it('sets CSTS.RDY on CC.EN 0->1 and creates the admin queues from AQA/ASQ/ACQ', () => {
      const host = new NvmeTestHost();
      expect(host.enable()).to.equal(NVME_CSTS_RDY);
      expect(host.events).to.deep.include({ kind: 'queue-created', queue: 'sq', qid: 0, entries: ADMIN_ENTRIES, location: 'host' });
      expect(host.events).to.deep.include({ kind: 'queue-created', queue: 'cq', qid: 0, entries: ADMIN_ENTRIES, location: 'host' });
      expect(host.admin({ opcode: NVME_ADMIN_GET_FEATURES, cdw10: NVME_FEAT_VOLATILE_WC })).to.include({ status: NVME_SC_SUCCESS, result: 1 });
    });

    for (const [what, cc, aqa, asq] of [
      ['CC.CSS selects a command set other than NVM', NVME_CC_NVM_ENABLE | (1 << 4), undefined, undefined],
      ['CC.AMS selects weighted round robin', NVME_CC_NVM_ENABLE | (1 << 11), undefined, undefined],
      ['CC.MPS is above CAP.MPSMAX', NVME_CC_NVM_ENABLE | (5 << NVME_CC_MPS_SHIFT), undefined, undefined],
      ['AQA.ASQS is 0 (a 1-entry admin SQ)', NVME_CC_NVM_ENABLE, 0x001f0000, undefined],
      ['ASQ is not aligned to an 8 KiB CC.MPS page', NVME_CC_NVM_ENABLE | (1 << NVME_CC_MPS_SHIFT), undefined, 0x3000n],
    ] as const) {
      it(`sets CSTS.CFS, not RDY, when enabled with ${what}`, () => {
        const host = new NvmeTestHost();
        host.controller.writeAqa(aqa ?? 0x001f001f);
        host.controller.writeAsq(asq ?? 0x2000n);
        host.controller.writeAcq(0x4000n);
        host.controller.writeCc(cc);
        expect(host.controller.csts).to.equal(NVME_CSTS_CFS);
        expect(states(host.events)).to.deep.equal(['fatal']);
      });
    }

    it('clears CSTS.CFS with a controller reset and comes up on the next enable', () => {
      const host = new NvmeTestHost();
      host.enable({ cc: NVME_CC_NVM_ENABLE | (1 << 4) });
      host.controller.writeCc(0);
      expect(host.controller.csts).to.equal(0);
      host.forgetQueues();
      expect(host.enable()).to.equal(NVME_CSTS_RDY);
    });

    it('reads ASQ and ACQ back with bits 11:0 cleared, and AQA without its reserved bits', () => {
      const { controller } = new NvmeTestHost();
      controller.writeAsq(0x1234_5fffn);
      controller.writeAcq(0xffff_ffff_ffff_ffffn);
      controller.writeAqa(0xffffffff);
      expect([controller.asq, controller.acq, controller.aqa]).to.deep.equal([0x1234_5000n, 0xffff_ffff_ffff_f000n, 0x0fff0fff]);
    });
  });

  describe('doorbells', () => {
    it('runs no command inside the doorbell write: the command runs in a deferred turn', () => {
      const host = NvmeTestHost.ready();
      const before = host.ns1.flushes;
      host.submit(1, flush);
      expect(host.ns1.flushes, 'nothing ran inside the doorbell write').to.equal(before);
      expect(host.bus.pending).to.equal(1);
      host.bus.runAll();
      expect(host.ns1.flushes).to.equal(before + 1);
      expect(host.reap(1)).to.have.length(1);
    });

    it('reports each doorbell with its path and whether it was taken', () => {
      const host = NvmeTestHost.ready();
      host.controller.doorbell(2, 1, 'p2p');
      expect(host.events.at(-1)).to.deep.equal({ kind: 'doorbell', index: 2, value: 1, path: 'p2p', accepted: true });
    });

    for (const [what, index, value] of [
      ['the tail doorbell of a submission queue that does not exist', 2 * 5, 1],
      ['the head doorbell of a completion queue that does not exist', 2 * 5 + 1, 0],
      ['an SQ tail at or past the end of the queue', 2, 64],
      ['a CQ head that consumes entries the controller has not posted', 3, 1],
    ] as const) {
      it(`ignores ${what}`, () => {
        const host = NvmeTestHost.ready();
        host.controller.doorbell(index, value);
        expect(host.events.at(-1)).to.include({ kind: 'doorbell', accepted: false });
        expect(host.bus.runAll()).to.equal(0);
      });
    }

    it('ignores doorbells while the controller is not ready', () => {
      const host = new NvmeTestHost();
      host.controller.doorbell(0, 1);
      expect(host.events).to.deep.equal([{ kind: 'doorbell', index: 0, value: 1, path: 'mmio', accepted: false }]);
    });
  });

  describe('completion queue', () => {
    it('reports the submission queue head after the fetch in every completion', () => {
      const host = NvmeTestHost.ready({ entries: 8 });
      host.submit(1, flush);
      host.submit(1, flush);
      host.submit(1, flush);
      host.bus.runAll();
      expect(host.reap(1).map((c) => [c.sqId, c.sqHead])).to.deep.equal([
        [1, 1],
        [1, 2],
        [1, 3],
      ]);
    });

    it('flips the phase tag each time the completion queue wraps', () => {
      const host = NvmeTestHost.ready({ entries: 4 });
      const phases: boolean[] = [];
      for (let i = 0; i < 9; i++) phases.push(host.run(1, flush).phase);
      expect(phases).to.deep.equal([true, true, true, true, false, false, false, false, true]);
    });

    it('stops fetching while the completion queue is full and resumes on its head doorbell', () => {
      const host = new NvmeTestHost();
      host.enable();
      host.createQueuePair(1, 16, { cqEntries: 4 });
      for (let i = 0; i < 6; i++) host.submit(1, flush);
      host.bus.runAll();
      expect(host.ns1.flushes, 'a 4-entry CQ holds 3 completions').to.equal(3);
      const first = host.reap(1);
      expect(first.map((c) => c.sqHead)).to.deep.equal([1, 2, 3]);
      host.bus.runAll();
      expect(host.reap(1).map((c) => c.sqHead)).to.deep.equal([4, 5, 6]);
      expect(host.ns1.flushes).to.equal(6);
    });
  });

  describe('turns', () => {
    it(`fetches at most ${NVME_COMMANDS_PER_TURN} commands per submission queue per turn, then reschedules`, () => {
      const host = NvmeTestHost.ready({ entries: 256 });
      for (let i = 0; i < 100; i++) host.submit(1, flush);
      host.events.splice(0);
      host.bus.runOne();
      expect(commands(host.events.splice(0))).to.have.length(NVME_COMMANDS_PER_TURN);
      expect(host.bus.pending, 'the next turn is deferred').to.equal(1);
      host.bus.runOne();
      expect(commands(host.events)).to.have.length(100 - NVME_COMMANDS_PER_TURN);
    });

    it('serves submission queues round robin within a turn', () => {
      const host = NvmeTestHost.ready({ entries: 256 });
      host.addSubmissionQueue(2, 1, 256);
      for (let i = 0; i < 70; i++) host.submit(1, flush);
      for (let i = 0; i < 70; i++) host.submit(2, flush);
      host.events.splice(0);
      host.bus.runOne();
      const byQueue = commands(host.events).map((e) => e.qid);
      expect([byQueue.filter((q) => q === 1).length, byQueue.filter((q) => q === 2).length]).to.deep.equal([NVME_COMMANDS_PER_TURN, NVME_COMMANDS_PER_TURN]);
    });

    it('sets CSTS.CFS when a submission queue entry cannot be fetched', () => {
      const host = NvmeTestHost.ready();
      host.createQueuePair(2, 8, { sq: FAULT });
      host.controller.doorbell(4, 1);
      host.bus.runAll();
      expect(host.controller.csts & NVME_CSTS_CFS).to.equal(NVME_CSTS_CFS);
      expect(states(host.events)).to.deep.equal(['ready', 'fatal']);
    });

    it('sets CSTS.CFS when a completion cannot be posted, and runs nothing more', () => {
      const host = NvmeTestHost.ready();
      host.createQueuePair(2, 8, { cq: FAULT });
      host.submit(2, flush);
      host.submit(2, flush);
      host.bus.runAll();
      expect(host.controller.csts & NVME_CSTS_CFS).to.equal(NVME_CSTS_CFS);
      expect(host.ns1.flushes, 'the first command ran, its completion failed, the second never ran').to.equal(1);
    });
  });

  describe('reset and shutdown', () => {
    it('drops pending work on CC.EN 1->0: a deferred turn runs nothing', () => {
      const host = NvmeTestHost.ready();
      host.submit(1, { opcode: NVME_CMD_WRITE, nsid: 1, prp1: host.alloc(PAGE), cdw12: 0 });
      host.controller.writeCc(NVME_CC_NVM_ENABLE & ~NVME_CC_ENABLE);
      host.bus.runAll();
      expect(commands(host.events)).to.have.length(2, 'only the two queue-creating admin commands ran');
      expect(host.controller.csts).to.equal(0);
    });

    it('deletes every queue on a controller reset: doorbells of the old queues are ignored', () => {
      const host = NvmeTestHost.ready();
      host.controller.writeCc(0);
      expect(host.events.filter((e) => e.kind === 'queue-deleted')).to.have.length(4);
      host.controller.doorbell(2, 1);
      expect(host.events.at(-1)).to.include({ accepted: false });
    });

    it('keeps AQA, ASQ, ACQ and CMBMSC across CC.EN 1->0, and a reset() brings them to 0', () => {
      const host = NvmeTestHost.ready();
      host.enableCmb();
      const registers = () => [host.controller.aqa, host.controller.asq, host.controller.acq, host.controller.cmbmsc];
      const before = registers();
      host.controller.writeCc(0);
      expect(registers()).to.deep.equal(before);
      host.controller.reset();
      expect(registers()).to.deep.equal([0, 0n, 0n, 0n]);
      expect([host.controller.cc, host.controller.csts]).to.deep.equal([0, 0]);
    });

    it('drops a deferred turn on reset() (FLR, D3hot -> D0)', () => {
      const host = NvmeTestHost.ready();
      const before = host.ns1.flushes;
      host.submit(1, flush);
      host.controller.reset();
      host.bus.runAll();
      expect(host.ns1.flushes).to.equal(before);
    });

    it('starts fresh queues after a controller reset and re-enable', () => {
      const host = NvmeTestHost.ready();
      host.run(1, flush);
      host.controller.writeCc(0);
      host.forgetQueues();
      host.enable();
      host.createQueuePair(1, 8);
      expect(host.run(1, flush)).to.include({ sqHead: 1, phase: true, status: NVME_SC_SUCCESS });
    });

    it('reports shutdown occurring at the CC.SHN write, then flushes every namespace and reports it complete', () => {
      const host = NvmeTestHost.ready({ namespaces: [new HeapNamespaceStore(64, 512), new HeapNamespaceStore(64, 4096)] });
      host.controller.writeCc(NVME_CC_NVM_ENABLE | NVME_CC_SHN_NORMAL);
      expect(host.controller.csts).to.equal(NVME_CSTS_RDY | NVME_CSTS_SHST_OCCUR);
      host.bus.runAll();
      expect(host.controller.csts).to.equal(NVME_CSTS_RDY | NVME_CSTS_SHST_CMPLT);
      expect(host.namespaces.map((ns) => (ns as HeapNamespaceStore).flushes)).to.deep.equal([1, 1]);
      expect(states(host.events)).to.deep.equal(['ready', 'shutdown-complete']);
    });

    it('fetches no command after a shutdown until the controller is reset', () => {
      const host = NvmeTestHost.ready();
      host.controller.writeCc(NVME_CC_NVM_ENABLE | NVME_CC_SHN_NORMAL);
      host.bus.runAll();
      host.submit(1, flush);
      host.bus.runAll();
      expect(host.reap(1)).to.deep.equal([]);
      host.controller.writeCc(NVME_CC_NVM_ENABLE);
      expect(host.controller.csts & NVME_CSTS_SHST_CMPLT, 'clearing SHN clears SHST').to.equal(0);
    });
  });

  it('takes admin queues in the CMB when CMBSZ.SQS and CQS allow it', () => {
    const host = new NvmeTestHost();
    host.enableCmb();
    const asq = host.allocCmb(ADMIN_ENTRIES * NVME_SQE_SIZE);
    const acq = host.allocCmb(PAGE);
    expect(host.enable({ asq, acq })).to.equal(NVME_CSTS_RDY);
    expect(host.admin({ opcode: NVME_ADMIN_GET_FEATURES, cdw10: NVME_FEAT_VOLATILE_WC }).status).to.equal(NVME_SC_SUCCESS);
    expect(host.bus.accesses, 'the admin queues never touched the bus').to.deep.equal({ read: 0, write: 0, map: 0 });
  });
});
