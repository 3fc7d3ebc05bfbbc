import { expect } from 'chai';
import { HeapNamespaceStore } from './namespace-heap';
import { NVME_MAX_INTERRUPT_VECTORS } from './nvme-admin-queues';
import {
  NVME_ADMIN_ABORT_CMD,
  NVME_ADMIN_CREATE_CQ,
  NVME_ADMIN_CREATE_SQ,
  NVME_ADMIN_DELETE_CQ,
  NVME_ADMIN_DELETE_SQ,
  NVME_ADMIN_GET_FEATURES,
  NVME_ADMIN_GET_LOG_PAGE,
  NVME_ADMIN_IDENTIFY,
  NVME_ADMIN_SET_FEATURES,
  NVME_CMD_READ,
  NVME_CMD_WRITE,
  NVME_NSID_ALL,
  type NvmeCommandFields,
} from './nvme-command';
import { NVME_MDTS } from './nvme-controller';
import {
  NVME_FEAT_ARBITRATION,
  NVME_FEAT_NUM_QUEUES,
  NVME_FEAT_POWER_MGMT,
  NVME_FEAT_SEL_DEFAULT,
  NVME_FEAT_SEL_SAVED,
  NVME_FEAT_SEL_SUPPORTED,
  NVME_FEAT_TEMP_THRESH,
  NVME_FEAT_VOLATILE_WC,
} from './nvme-features';
import { NVME_ACL, NVME_ELPE, nvmeSubsystemNqn, NVME_ID_CNS_CTRL, NVME_ID_CNS_NS, NVME_ID_CNS_NS_ACTIVE_LIST, NVME_ID_CNS_NS_DESC_LIST, NVME_LPA, NVME_VWC } from './nvme-identify';
import { NVME_COMPOSITE_TEMPERATURE, NVME_LOG_ERROR, NVME_LOG_FW_SLOT, NVME_LOG_SMART, NVME_SMART_CRIT_TEMPERATURE } from './nvme-log-pages';
import { NVME_CC_ENABLE, NVME_MAX_QUEUE_ENTRIES, NVME_VS_1_4 } from './nvme-regs';
import {
  NVME_SC_ABORT_REQ,
  NVME_SC_CMD_SEQ_ERROR,
  NVME_SC_CQ_INVALID,
  NVME_SC_DATA_XFER_ERROR,
  NVME_SC_DNR,
  NVME_SC_FEATURE_NOT_PER_NS,
  NVME_SC_FEATURE_NOT_SAVEABLE,
  NVME_SC_INVALID_FIELD,
  NVME_SC_INVALID_LOG_PAGE,
  NVME_SC_INVALID_NS,
  NVME_SC_INVALID_OPCODE,
  NVME_SC_INVALID_QUEUE,
  NVME_SC_INVALID_VECTOR,
  NVME_SC_LBA_RANGE,
  NVME_SC_PRP_INVALID_OFFSET,
  NVME_SC_QID_INVALID,
  NVME_SC_QUEUE_SIZE,
  NVME_SC_SUCCESS,
} from './nvme-status';
import { FAULT, IDENTITY, NvmeTestHost, PAGE } from './testing/nvme-test-host';

const dnr = (status: number): number => status | NVME_SC_DNR;
/** Status names as the specification gives them, for test titles. */
const NAMES = new Map<number, string>([
  [NVME_SC_INVALID_FIELD, 'Invalid Field in Command'],
  [NVME_SC_INVALID_NS, 'Invalid Namespace or Format'],
  [NVME_SC_CQ_INVALID, 'Completion Queue Invalid'],
  [NVME_SC_QID_INVALID, 'Invalid Queue Identifier'],
  [NVME_SC_QUEUE_SIZE, 'Invalid Queue Size'],
  [NVME_SC_PRP_INVALID_OFFSET, 'Invalid PRP Offset'],
  [NVME_SC_INVALID_VECTOR, 'Invalid Interrupt Vector'],
  [NVME_SC_FEATURE_NOT_SAVEABLE, 'Feature Identifier Not Saveable'],
  [NVME_SC_FEATURE_NOT_PER_NS, 'Feature Not Namespace Specific'],
]);
const identifyCommand = (host: NvmeTestHost, cns: number, nsid = 0): NvmeCommandFields & { prp1: bigint } => ({
  opcode: NVME_ADMIN_IDENTIFY,
  commandId: 0,
  nsid,
  prp1: host.alloc(PAGE),
  cdw10: cns,
});
/** Runs Identify and returns its status and the 4 KiB it wrote. */
function identify(host: NvmeTestHost, cns: number, nsid = 0): { status: number; data: Buffer } {
  const command = identifyCommand(host, cns, nsid);
  return { status: host.adminStatus(command), data: host.peek(command.prp1, PAGE) };
}

const createCq = (qid: number, entries: number, prp1: bigint, cdw11 = 1) => ({ opcode: NVME_ADMIN_CREATE_CQ, prp1, cdw10: (((entries - 1) << 16) | qid) >>> 0, cdw11 });
const createSq = (qid: number, entries: number, prp1: bigint, cqid: number, flags = 1) => ({
  opcode: NVME_ADMIN_CREATE_SQ,
  prp1,
  cdw10: (((entries - 1) << 16) | qid) >>> 0,
  cdw11: ((cqid << 16) | flags) >>> 0,
});
const setFeature = (fid: number, cdw11: number, extra: Partial<NvmeCommandFields> = {}) => ({ opcode: NVME_ADMIN_SET_FEATURES, cdw10: fid, cdw11, ...extra });
const getFeature = (fid: number, select = 0, cdw11 = 0) => ({ opcode: NVME_ADMIN_GET_FEATURES, cdw10: fid | (select << 8), cdw11 });

/** Get Log Page of `length` bytes at `offset`, into fresh host memory; returns the completion and the bytes. */
function getLog(host: NvmeTestHost, lid: number, length: number, offset = 0n, nsid = 0) {
  const buffer = host.alloc(Math.max(length, PAGE));
  host.poke(buffer, Buffer.alloc(length, 0xee));
  const numd = length / 4 - 1;
  const completion = host.admin({
    opcode: NVME_ADMIN_GET_LOG_PAGE,
    nsid,
    ...host.prps(buffer, length),
    cdw10: (lid | ((numd & 0xffff) << 16)) >>> 0,
    cdw11: numd >>> 16,
    cdw12: Number(offset & 0xffffffffn),
    cdw13: Number(offset >> 32n),
  });
  return { status: completion.status, data: host.peek(buffer, length) };
}

/** Writes `blocks` blocks of `fill` at LBA `slba` of `nsid` through SQ 1. */
function write(host: NvmeTestHost, slba: number, blocks: number, fill: number, nsid = 1): number {
  const length = blocks * 512;
  const buffer = host.alloc(length);
  host.poke(buffer, Buffer.alloc(length, fill));
  return host.run(1, { opcode: NVME_CMD_WRITE, nsid, ...host.prps(buffer, length), cdw10: slba, cdw12: blocks - 1 }).status;
}

describe('nvme admin command set', () => {
  describe('every admin command', () => {
    it('completes an opcode it does not implement (Asynchronous Event Request) with Invalid Command Opcode', () => {
      expect(NvmeTestHost.ready().adminStatus({ opcode: 0x0c })).to.equal(dnr(NVME_SC_INVALID_OPCODE));
    });

    it('refuses a fused operation (FUSE) with Invalid Field', () => {
      expect(NvmeTestHost.ready().adminStatus({ ...getFeature(NVME_FEAT_VOLATILE_WC), flags: 0x01 })).to.equal(dnr(NVME_SC_INVALID_FIELD));
    });

    it('refuses SGL data pointers (PSDT) with Invalid Field', () => {
      expect(NvmeTestHost.ready().adminStatus({ ...getFeature(NVME_FEAT_VOLATILE_WC), flags: 0x40 })).to.equal(dnr(NVME_SC_INVALID_FIELD));
    });

    it('checks the opcode before the flags', () => {
      expect(NvmeTestHost.ready().adminStatus({ opcode: 0x0c, flags: 0x41 })).to.equal(dnr(NVME_SC_INVALID_OPCODE));
    });
  });

  describe('Identify', () => {
    it('returns the controller: VID, SSVID, SN, MN, FR, MDTS, VER, SQES/CQES, NN, ONCS, VWC, ACL, ELPE, LPA', () => {
      const host = NvmeTestHost.ready({ namespaces: [new HeapNamespaceStore(64, 512), new HeapNamespaceStore(64, 512)] });
      const { status, data } = identify(host, NVME_ID_CNS_CTRL);
      expect(status).to.equal(NVME_SC_SUCCESS);
      expect([data.readUInt16LE(0), data.readUInt16LE(2)]).to.deep.equal([IDENTITY.vendorId, IDENTITY.subsystemVendorId]);
      expect(data.toString('latin1', 4, 24)).to.equal(IDENTITY.serialNumber.padEnd(20));
      expect(data.toString('latin1', 24, 64)).to.equal(IDENTITY.modelNumber.padEnd(40));
      expect(data.toString('latin1', 64, 72)).to.equal(IDENTITY.firmwareRevision.padEnd(8));
      expect(data[77], 'MDTS').to.equal(NVME_MDTS);
      expect(data.readUInt32LE(80), 'VER').to.equal(NVME_VS_1_4);
      expect([data[512], data[513]], 'SQES, CQES').to.deep.equal([0x66, 0x44]);
      expect(data.readUInt32LE(516), 'NN').to.equal(2);
      expect(data.readUInt16LE(520) & (1 << 3), 'ONCS Write Zeroes').to.equal(1 << 3);
      expect(data[525], 'VWC').to.equal(NVME_VWC);
      expect([data[258], data[262], data[261]], 'ACL, ELPE, LPA').to.deep.equal([NVME_ACL, NVME_ELPE, NVME_LPA]);
      expect(data.toString('utf8', 768, 768 + nvmeSubsystemNqn(IDENTITY).length + 1), 'SUBNQN, NUL-terminated').to.equal(`${nvmeSubsystemNqn(IDENTITY)}\0`);
    });

    it('returns a namespace: NSZE, NCAP, NUSE and its LBA format', () => {
      const host = NvmeTestHost.ready({ namespaces: [new HeapNamespaceStore(64, 512), new HeapNamespaceStore(300, 4096)] });
      const { status, data } = identify(host, NVME_ID_CNS_NS, 2);
      expect(status).to.equal(NVME_SC_SUCCESS);
      expect([data.readBigUInt64LE(0), data.readBigUInt64LE(8), data.readBigUInt64LE(16)]).to.deep.equal([300n, 300n, 300n]);
      expect([data[25], data[26], data[130]], 'NLBAF, FLBAS, LBAF0.LBADS').to.deep.equal([0, 0, 12]);
    });

    for (const [what, nsid] of [
      ['NSID 0', 0],
      ['an NSID beyond NN', 2],
      ['the broadcast NSID', NVME_NSID_ALL],
    ] as const) {
      it(`refuses to identify ${what} with Invalid Namespace or Format`, () => {
        expect(identify(NvmeTestHost.ready(), NVME_ID_CNS_NS, nsid).status).to.equal(dnr(NVME_SC_INVALID_NS));
      });
    }

    it('lists the active namespaces above NSID', () => {
      const host = NvmeTestHost.ready({ namespaces: [1, 2, 3].map(() => new HeapNamespaceStore(8, 512)) });
      const { data } = identify(host, NVME_ID_CNS_NS_ACTIVE_LIST, 1);
      expect([data.readUInt32LE(0), data.readUInt32LE(4), data.readUInt32LE(8)]).to.deep.equal([2, 3, 0]);
    });

    it('refuses an active namespace list above FFFFFFFEh with Invalid Namespace or Format', () => {
      expect(identify(NvmeTestHost.ready(), NVME_ID_CNS_NS_ACTIVE_LIST, 0xfffffffe).status).to.equal(dnr(NVME_SC_INVALID_NS));
    });

    it('returns the namespace identification descriptors: the NGUID that Identify Namespace reports', () => {
      const host = NvmeTestHost.ready();
      const descriptors = identify(host, NVME_ID_CNS_NS_DESC_LIST, 1).data;
      const namespace = identify(host, NVME_ID_CNS_NS, 1).data;
      expect([descriptors[0], descriptors[1]], 'NIDT NGUID, NIDL 16').to.deep.equal([2, 16]);
      expect(descriptors.subarray(4, 20)).to.deep.equal(namespace.subarray(104, 120));
      expect(descriptors.subarray(4, 20).some((b) => b !== 0)).to.equal(true);
    });

    it('refuses a CNS it does not implement with Invalid Field', () => {
      expect(identify(NvmeTestHost.ready(), 0x10).status).to.equal(dnr(NVME_SC_INVALID_FIELD));
    });

    it('writes across two pages through PRP1 at an offset and PRP2', () => {
      const host = NvmeTestHost.ready();
      const buffer = host.alloc(2 * PAGE);
      expect(host.adminStatus({ opcode: NVME_ADMIN_IDENTIFY, cdw10: NVME_ID_CNS_CTRL, ...host.prps(buffer + 0x800n, PAGE) })).to.equal(NVME_SC_SUCCESS);
      expect(host.peek(buffer + 0x800n + 4n, 20).toString('latin1')).to.equal(IDENTITY.serialNumber.padEnd(20));
      expect(host.peek(buffer + 0x800n + 512n, 2), 'SQES/CQES, in the second page').to.deep.equal(Buffer.from([0x66, 0x44]));
    });

    it('completes with Data Transfer Error when its buffer has no IOMMU translation', () => {
      expect(NvmeTestHost.ready().adminStatus({ opcode: NVME_ADMIN_IDENTIFY, cdw10: NVME_ID_CNS_CTRL, prp1: FAULT })).to.equal(NVME_SC_DATA_XFER_ERROR);
    });
  });

  describe('Create I/O Completion Queue', () => {
    it('creates the queue and reports it', () => {
      const host = NvmeTestHost.ready();
      expect(host.adminStatus(createCq(2, 16, host.alloc(PAGE)))).to.equal(NVME_SC_SUCCESS);
      expect(host.events).to.deep.include({ kind: 'queue-created', queue: 'cq', qid: 2, entries: 16, location: 'host' });
    });

    for (const [what, command, status] of [
      ['QID 0', (host: NvmeTestHost) => createCq(0, 16, host.alloc(PAGE)), NVME_SC_QID_INVALID],
      ['a QID in use', (host: NvmeTestHost) => createCq(1, 16, host.alloc(PAGE)), NVME_SC_QID_INVALID],
      ['a QID beyond the 64 queues the controller has', (host: NvmeTestHost) => createCq(65, 16, host.alloc(PAGE)), NVME_SC_QID_INVALID],
      ['QSIZE 0 (a 1-entry queue)', (host: NvmeTestHost) => createCq(2, 1, host.alloc(PAGE)), NVME_SC_QUEUE_SIZE],
      ['a QSIZE beyond CAP.MQES', (host: NvmeTestHost) => createCq(2, NVME_MAX_QUEUE_ENTRIES + 1, host.alloc(PAGE)), NVME_SC_QUEUE_SIZE],
      ['a PRP1 that is not page aligned', (host: NvmeTestHost) => createCq(2, 16, host.alloc(PAGE) + 0x100n), NVME_SC_PRP_INVALID_OFFSET],
      ['an interrupt vector beyond the controller’s', (host: NvmeTestHost) => createCq(2, 16, host.alloc(PAGE), (NVME_MAX_INTERRUPT_VECTORS << 16) | 3), NVME_SC_INVALID_VECTOR],
      ['PC clear (CAP.CQR requires contiguous queues)', (host: NvmeTestHost) => createCq(2, 16, host.alloc(PAGE), 0), NVME_SC_INVALID_FIELD],
    ] as const) {
      it(`refuses ${what} with ${NAMES.get(status)}`, () => {
        const host = NvmeTestHost.ready();
        expect(host.adminStatus(command(host))).to.equal(dnr(status));
      });
    }

    it('refuses a QID beyond what Number of Queues granted', () => {
      const host = new NvmeTestHost();
      host.enable();
      expect(host.admin(setFeature(NVME_FEAT_NUM_QUEUES, 0x00010001)).result).to.equal(0x00010001);
      expect(host.adminStatus(createCq(2, 16, host.alloc(PAGE)))).to.equal(NVME_SC_SUCCESS);
      expect(host.adminStatus(createCq(3, 16, host.alloc(PAGE)))).to.equal(dnr(NVME_SC_QID_INVALID));
    });

    it('refuses a queue before CC.IOCQES is set, with Invalid Queue Size', () => {
      const host = new NvmeTestHost();
      host.enable({ cc: NVME_CC_ENABLE });
      expect(host.adminStatus(createCq(1, 16, host.alloc(PAGE)))).to.equal(dnr(NVME_SC_QUEUE_SIZE));
    });

    it('checks QID, QSIZE, PRP1, IV, then PC, in that order', () => {
      const host = NvmeTestHost.ready();
      const base = host.alloc(PAGE);
      const steps = [
        createCq(0, 1, base + 8n, NVME_MAX_INTERRUPT_VECTORS << 16),
        createCq(2, 1, base + 8n, NVME_MAX_INTERRUPT_VECTORS << 16),
        createCq(2, 16, base + 8n, NVME_MAX_INTERRUPT_VECTORS << 16),
        createCq(2, 16, base, NVME_MAX_INTERRUPT_VECTORS << 16),
        createCq(2, 16, base, 0),
        createCq(2, 16, base, 1),
      ];
      expect(steps.map((command) => host.adminStatus(command))).to.deep.equal([
        dnr(NVME_SC_QID_INVALID),
        dnr(NVME_SC_QUEUE_SIZE),
        dnr(NVME_SC_PRP_INVALID_OFFSET),
        dnr(NVME_SC_INVALID_VECTOR),
        dnr(NVME_SC_INVALID_FIELD),
        NVME_SC_SUCCESS,
      ]);
    });
  });

  describe('Create I/O Submission Queue', () => {
    it('creates the queue on an existing completion queue', () => {
      const host = NvmeTestHost.ready();
      expect(host.adminStatus(createSq(2, 16, host.alloc(PAGE), 1))).to.equal(NVME_SC_SUCCESS);
      expect(host.events).to.deep.include({ kind: 'queue-created', queue: 'sq', qid: 2, entries: 16, location: 'host' });
    });

    for (const [what, command, status] of [
      ['CQID 0 (the admin CQ)', (host: NvmeTestHost) => createSq(2, 16, host.alloc(PAGE), 0), NVME_SC_CQ_INVALID],
      ['a CQID with no queue', (host: NvmeTestHost) => createSq(2, 16, host.alloc(PAGE), 9), NVME_SC_CQ_INVALID],
      ['QID 0', (host: NvmeTestHost) => createSq(0, 16, host.alloc(PAGE), 1), NVME_SC_QID_INVALID],
      ['a QID in use', (host: NvmeTestHost) => createSq(1, 16, host.alloc(PAGE), 1), NVME_SC_QID_INVALID],
      ['QSIZE 0 (a 1-entry queue)', (host: NvmeTestHost) => createSq(2, 1, host.alloc(PAGE), 1), NVME_SC_QUEUE_SIZE],
      ['a QSIZE beyond CAP.MQES', (host: NvmeTestHost) => createSq(2, NVME_MAX_QUEUE_ENTRIES + 1, host.alloc(PAGE), 1), NVME_SC_QUEUE_SIZE],
      ['a PRP1 that is not page aligned', (host: NvmeTestHost) => createSq(2, 16, host.alloc(PAGE) + 0x40n, 1), NVME_SC_PRP_INVALID_OFFSET],
      ['PC clear', (host: NvmeTestHost) => createSq(2, 16, host.alloc(PAGE), 1, 0), NVME_SC_INVALID_FIELD],
    ] as const) {
      it(`refuses ${what} with ${NAMES.get(status)}`, () => {
        const host = NvmeTestHost.ready();
        expect(host.adminStatus(command(host))).to.equal(dnr(status));
      });
    }

    it('refuses a queue before CC.IOSQES is set, with Invalid Queue Size', () => {
      const host = new NvmeTestHost();
      host.enable({ cc: NVME_CC_ENABLE | (4 << 20) });
      expect(host.adminStatus(createCq(1, 16, host.alloc(PAGE)))).to.equal(NVME_SC_SUCCESS);
      expect(host.adminStatus(createSq(1, 16, host.alloc(PAGE), 1))).to.equal(dnr(NVME_SC_QUEUE_SIZE));
    });

    it('checks CQID, QID, QSIZE, PRP1, then PC, in that order', () => {
      const host = NvmeTestHost.ready();
      const base = host.alloc(PAGE);
      const steps = [createSq(0, 1, base + 8n, 0, 0), createSq(0, 1, base + 8n, 1, 0), createSq(2, 1, base + 8n, 1, 0), createSq(2, 8, base + 8n, 1, 0), createSq(2, 8, base, 1, 0), createSq(2, 8, base, 1)];
      expect(steps.map((command) => host.adminStatus(command))).to.deep.equal([
        dnr(NVME_SC_CQ_INVALID),
        dnr(NVME_SC_QID_INVALID),
        dnr(NVME_SC_QUEUE_SIZE),
        dnr(NVME_SC_PRP_INVALID_OFFSET),
        dnr(NVME_SC_INVALID_FIELD),
        NVME_SC_SUCCESS,
      ]);
    });
  });

  describe('Delete I/O Submission Queue and Completion Queue', () => {
    it('deletes a submission queue: its doorbell is then ignored', () => {
      const host = NvmeTestHost.ready();
      expect(host.adminStatus({ opcode: NVME_ADMIN_DELETE_SQ, cdw10: 1 })).to.equal(NVME_SC_SUCCESS);
      expect(host.events).to.deep.include({ kind: 'queue-deleted', queue: 'sq', qid: 1 });
      host.controller.doorbell(2, 1);
      expect(host.events.at(-1)).to.include({ accepted: false });
    });

    it('deletes a completion queue once its submission queues are gone', () => {
      const host = NvmeTestHost.ready();
      expect(host.adminStatus({ opcode: NVME_ADMIN_DELETE_CQ, cdw10: 1 })).to.equal(dnr(NVME_SC_INVALID_QUEUE));
      expect(host.adminStatus({ opcode: NVME_ADMIN_DELETE_SQ, cdw10: 1 })).to.equal(NVME_SC_SUCCESS);
      expect(host.adminStatus({ opcode: NVME_ADMIN_DELETE_CQ, cdw10: 1 })).to.equal(NVME_SC_SUCCESS);
      expect(host.events).to.deep.include({ kind: 'queue-deleted', queue: 'cq', qid: 1 });
    });

    for (const [what, opcode, qid] of [
      ['the admin submission queue', NVME_ADMIN_DELETE_SQ, 0],
      ['a submission queue that does not exist', NVME_ADMIN_DELETE_SQ, 7],
      ['the admin completion queue', NVME_ADMIN_DELETE_CQ, 0],
      ['a completion queue that does not exist', NVME_ADMIN_DELETE_CQ, 7],
    ] as const) {
      it(`refuses to delete ${what} with Invalid Queue Identifier`, () => {
        expect(NvmeTestHost.ready().adminStatus({ opcode, cdw10: qid })).to.equal(dnr(NVME_SC_QID_INVALID));
      });
    }

    it('drops the commands still in a deleted submission queue without running them', () => {
      const host = NvmeTestHost.ready({ entries: 8 });
      host.createQueuePair(2, 8, { cqEntries: 2 });
      write(host, 0, 1, 0x11);
      const buffer = host.alloc(PAGE);
      host.poke(buffer, Buffer.alloc(512, 0x22));
      host.submit(2, { opcode: NVME_CMD_WRITE, nsid: 1, prp1: buffer, cdw10: 1 });
      host.submit(2, { opcode: NVME_CMD_WRITE, nsid: 1, prp1: buffer, cdw10: 2 });
      host.bus.runAll();
      expect(host.adminStatus({ opcode: NVME_ADMIN_DELETE_SQ, cdw10: 2 })).to.equal(NVME_SC_SUCCESS);
      host.reap(2);
      host.bus.runAll();
      expect([host.ns1.data[512], host.ns1.data[1024]], 'the first write ran; the second, behind a full CQ, never did').to.deep.equal([0x22, 0]);
    });
  });

  describe('Get Log Page', () => {
    it('returns the Error Information log: newest first, with error count, SQID, CID, status and LBA', () => {
      const host = NvmeTestHost.ready();
      const bad = host.run(1, { opcode: NVME_CMD_READ, nsid: 1, prp1: host.alloc(PAGE), cdw10: 5000 });
      const { status, data } = getLog(host, NVME_LOG_ERROR, 128);
      expect(status).to.equal(NVME_SC_SUCCESS);
      expect(data.readBigUInt64LE(0), 'error count').to.equal(1n);
      expect([data.readUInt16LE(8), data.readUInt16LE(10)]).to.deep.equal([1, bad.commandId]);
      expect(data.readUInt16LE(12) >>> 1, 'status field').to.equal(dnr(NVME_SC_LBA_RANGE));
      expect([data.readBigUInt64LE(16), data.readUInt32LE(24)], 'LBA, NSID').to.deep.equal([5000n, 1]);
      expect(data.readBigUInt64LE(64), 'the second entry is empty').to.equal(0n);
    });

    it('counts data units in thousands of 512 bytes rounded up, and host read and write commands, in SMART / Health', () => {
      const host = NvmeTestHost.ready();
      expect(write(host, 0, 1001, 0x5a)).to.equal(NVME_SC_SUCCESS);
      for (let i = 0; i < 3; i++) host.run(1, { opcode: NVME_CMD_READ, nsid: 1, prp1: host.alloc(PAGE), cdw12: 7 });
      const { status, data } = getLog(host, NVME_LOG_SMART, 512);
      expect(status).to.equal(NVME_SC_SUCCESS);
      expect(data.readUInt16LE(1), 'composite temperature').to.equal(NVME_COMPOSITE_TEMPERATURE);
      expect(data.readBigUInt64LE(32), 'data units read: 24 units').to.equal(1n);
      expect(data.readBigUInt64LE(48), 'data units written: 1001 units').to.equal(2n);
      expect([data.readBigUInt64LE(64), data.readBigUInt64LE(80)], 'host read, write commands').to.deep.equal([3n, 1n]);
    });

    it('reports SMART / Health per namespace, and the whole controller for NSID 0 and FFFFFFFFh', () => {
      const host = NvmeTestHost.ready({ namespaces: [new HeapNamespaceStore(64, 512), new HeapNamespaceStore(64, 512)] });
      write(host, 0, 2, 1, 2);
      const written = (nsid: number) => getLog(host, NVME_LOG_SMART, 512, 0n, nsid).data.readBigUInt64LE(80);
      expect([written(1), written(2), written(0), written(NVME_NSID_ALL)]).to.deep.equal([0n, 1n, 1n, 1n]);
      expect(getLog(host, NVME_LOG_SMART, 512, 0n, 3).status).to.equal(dnr(NVME_SC_INVALID_NS));
    });

    it('returns the Firmware Slot Information log: slot 1 active, holding FR', () => {
      const { data } = getLog(NvmeTestHost.ready(), NVME_LOG_FW_SLOT, 64);
      expect(data[0]).to.equal(1);
      expect(data.toString('latin1', 8, 16)).to.equal(IDENTITY.firmwareRevision.padEnd(8));
    });

    it('transfers the page from the offset, and only the bytes the page holds', () => {
      const host = NvmeTestHost.ready();
      write(host, 0, 8, 1);
      const { data } = getLog(host, NVME_LOG_SMART, 512, 480n);
      expect(data.subarray(0, 32).every((b) => b === 0), 'the last 32 bytes of the page').to.equal(true);
      expect(data.subarray(32).every((b) => b === 0xee), 'nothing past the page').to.equal(true);
    });

    for (const [what, lid, length, offset, status] of [
      ['a log page it does not have, with Invalid Log Page', 0x7f, 512, 0n, NVME_SC_INVALID_LOG_PAGE],
      ['an offset that is not dword aligned, with Invalid Field', NVME_LOG_SMART, 512, 2n, NVME_SC_INVALID_FIELD],
      ['an offset past the page, with Invalid Field', NVME_LOG_SMART, 4, 512n, NVME_SC_INVALID_FIELD],
      ['a length beyond MDTS, with Invalid Field', NVME_LOG_ERROR, 2 ** NVME_MDTS * PAGE + 4, 0n, NVME_SC_INVALID_FIELD],
      ['an offset misaligned before an unknown LID: Invalid Field first', 0x7f, 512, 2n, NVME_SC_INVALID_FIELD],
      ['an unknown LID before an offset past its end: Invalid Log Page first', 0x7f, 4, 4096n, NVME_SC_INVALID_LOG_PAGE],
    ] as const) {
      it(`refuses ${what}`, () => {
        const host = new NvmeTestHost();
        host.enable();
        expect(getLog(host, lid, length, offset).status).to.equal(dnr(status));
      });
    }
  });

  describe('Set Features and Get Features', () => {
    it('grants at most 64 queues of each kind in Number of Queues, and reports the grant', () => {
      const host = new NvmeTestHost();
      host.enable();
      expect(host.admin(setFeature(NVME_FEAT_NUM_QUEUES, 0x00ff_0fff)).result).to.equal(0x003f_003f);
      expect(host.admin(getFeature(NVME_FEAT_NUM_QUEUES)).result).to.equal(0x003f_003f);
      expect(host.admin(setFeature(NVME_FEAT_NUM_QUEUES, 0x0000_0003)).result).to.equal(0x0000_0003);
    });

    it('refuses FFFFh in NSQR or NCQR with Invalid Field', () => {
      const host = new NvmeTestHost();
      host.enable();
      expect(host.adminStatus(setFeature(NVME_FEAT_NUM_QUEUES, 0xffff_0000))).to.equal(dnr(NVME_SC_INVALID_FIELD));
    });

    it('refuses Number of Queues once an I/O queue exists, with Command Sequence Error', () => {
      expect(NvmeTestHost.ready().adminStatus(setFeature(NVME_FEAT_NUM_QUEUES, 1))).to.equal(dnr(NVME_SC_CMD_SEQ_ERROR));
    });

    it('sets and gets Volatile Write Cache, Arbitration and Power Management', () => {
      const host = NvmeTestHost.ready();
      for (const [fid, value] of [
        [NVME_FEAT_VOLATILE_WC, 0],
        [NVME_FEAT_ARBITRATION, 0x0302_0103],
        [NVME_FEAT_POWER_MGMT, 0x20],
      ] as const) {
        expect(host.adminStatus(setFeature(fid, value))).to.equal(NVME_SC_SUCCESS);
        expect(host.admin(getFeature(fid)).result, `feature ${fid}`).to.equal(value);
      }
    });

    it('refuses a power state other than 0 (NPSS is 0) with Invalid Field', () => {
      expect(NvmeTestHost.ready().adminStatus(setFeature(NVME_FEAT_POWER_MGMT, 1))).to.equal(dnr(NVME_SC_INVALID_FIELD));
    });

    it('raises the SMART temperature warning when the over-temperature threshold drops below the composite temperature', () => {
      const host = NvmeTestHost.ready();
      expect(getLog(host, NVME_LOG_SMART, 4).data[0]).to.equal(0);
      expect(host.adminStatus(setFeature(NVME_FEAT_TEMP_THRESH, NVME_COMPOSITE_TEMPERATURE - 1))).to.equal(NVME_SC_SUCCESS);
      expect(host.admin(getFeature(NVME_FEAT_TEMP_THRESH)).result).to.equal(NVME_COMPOSITE_TEMPERATURE - 1);
      expect(getLog(host, NVME_LOG_SMART, 4).data[0]).to.equal(NVME_SMART_CRIT_TEMPERATURE);
    });

    for (const [what, cdw11] of [
      ['a reserved THSEL', 2 << 20],
      ['a sensor it does not have (TMPSEL 1)', 1 << 16],
    ] as const) {
      it(`refuses a temperature threshold for ${what} with Invalid Field`, () => {
        expect(NvmeTestHost.ready().adminStatus(setFeature(NVME_FEAT_TEMP_THRESH, 0x150 | cdw11))).to.equal(dnr(NVME_SC_INVALID_FIELD));
      });
    }

    it('reports default, saved and supported-capabilities values through SEL', () => {
      const host = NvmeTestHost.ready();
      host.admin(setFeature(NVME_FEAT_VOLATILE_WC, 0));
      expect(host.admin(getFeature(NVME_FEAT_VOLATILE_WC, NVME_FEAT_SEL_DEFAULT)).result).to.equal(1);
      expect(host.admin(getFeature(NVME_FEAT_VOLATILE_WC, NVME_FEAT_SEL_SAVED)).result, 'not saveable: saved is the default').to.equal(1);
      expect(host.admin(getFeature(NVME_FEAT_VOLATILE_WC, NVME_FEAT_SEL_SUPPORTED)).result, 'changeable, not saveable, not per namespace').to.equal(0x4);
    });

    it('brings every feature back to its default on a controller reset', () => {
      const host = NvmeTestHost.ready();
      host.admin(setFeature(NVME_FEAT_VOLATILE_WC, 0));
      host.controller.writeCc(0);
      host.forgetQueues();
      host.enable();
      expect(host.admin(getFeature(NVME_FEAT_VOLATILE_WC)).result).to.equal(1);
    });

    for (const [what, command, status] of [
      ['a feature it does not support (Autonomous Power State Transition)', setFeature(0x0c, 0), NVME_SC_INVALID_FIELD],
      ['SV (no feature is saveable)', setFeature(NVME_FEAT_VOLATILE_WC, 1, { cdw10: (NVME_FEAT_VOLATILE_WC | (1 << 31)) >>> 0 }), NVME_SC_FEATURE_NOT_SAVEABLE],
      ['an NSID on a controller-wide feature', setFeature(NVME_FEAT_VOLATILE_WC, 1, { nsid: 1 }), NVME_SC_FEATURE_NOT_PER_NS],
      ['an NSID that names no namespace', setFeature(NVME_FEAT_VOLATILE_WC, 1, { nsid: 7 }), NVME_SC_INVALID_NS],
      ['an unsupported FID with SV set (the FID is checked first)', setFeature(0x0c, 0, { cdw10: (0x0c | (1 << 31)) >>> 0 }), NVME_SC_INVALID_FIELD],
      ['Get Features of a feature it does not support', getFeature(0x0c), NVME_SC_INVALID_FIELD],
      ['Get Features with a reserved SEL', getFeature(NVME_FEAT_VOLATILE_WC, 4), NVME_SC_INVALID_FIELD],
    ] as const) {
      it(`refuses ${what} with ${NAMES.get(status)}`, () => {
        expect(NvmeTestHost.ready().adminStatus(command)).to.equal(dnr(status));
      });
    }
  });

  describe('Abort', () => {
    it('reports a command it did not find with DW0 bit 0 set', () => {
      expect(NvmeTestHost.ready().admin({ opcode: NVME_ADMIN_ABORT_CMD, cdw10: (0x77 << 16) | 1 })).to.include({ status: NVME_SC_SUCCESS, result: 1 });
    });

    it('refuses an SQID with no queue with Invalid Field', () => {
      expect(NvmeTestHost.ready().adminStatus({ opcode: NVME_ADMIN_ABORT_CMD, cdw10: (1 << 16) | 9 })).to.equal(dnr(NVME_SC_INVALID_FIELD));
    });

    it('aborts a command still waiting in its submission queue: it completes with Command Abort Requested, unrun', () => {
      const host = NvmeTestHost.ready();
      host.createQueuePair(2, 8, { cqEntries: 2 });
      const buffer = host.alloc(PAGE);
      host.poke(buffer, Buffer.alloc(512, 0x33));
      host.submit(2, { opcode: NVME_CMD_WRITE, nsid: 1, prp1: buffer, cdw10: 1 });
      const waiting = host.submit(2, { opcode: NVME_CMD_WRITE, nsid: 1, prp1: buffer, cdw10: 2 });
      host.bus.runAll();
      expect(host.admin({ opcode: NVME_ADMIN_ABORT_CMD, cdw10: (waiting << 16) | 2 })).to.include({ status: NVME_SC_SUCCESS, result: 0 });
      expect(host.reap(2).map((c) => c.status)).to.deep.equal([NVME_SC_SUCCESS]);
      host.bus.runAll();
      expect(host.reap(2).map((c) => [c.commandId, c.status])).to.deep.equal([[waiting, NVME_SC_ABORT_REQ]]);
      expect(host.ns1.data[1024], 'the aborted write never ran').to.equal(0);
      expect(host.ns1.data[512], 'the first write ran').to.equal(0x33);
    });
  });
});
