import { expect } from 'chai';
import { errno } from '@p2p/errno';
import { HeapNamespaceStore } from './namespace-heap';
import { NVME_ADMIN_GET_LOG_PAGE, NVME_ADMIN_SET_FEATURES, NVME_CMD_FLUSH, NVME_CMD_READ, NVME_CMD_WRITE, NVME_CMD_WRITE_ZEROES, NVME_NSID_ALL } from './nvme-command';
import { NVME_MAX_TRANSFER_BYTES } from './nvme-controller';
import { NVME_FEAT_VOLATILE_WC } from './nvme-features';
import { NVME_LOG_SMART } from './nvme-log-pages';
import {
  NVME_SC_DATA_XFER_ERROR,
  NVME_SC_DNR,
  NVME_SC_INVALID_FIELD,
  NVME_SC_INVALID_NS,
  NVME_SC_INVALID_OPCODE,
  NVME_SC_LBA_RANGE,
  NVME_SC_PRP_INVALID_OFFSET,
  NVME_SC_READ_ERROR,
  NVME_SC_SUCCESS,
  NVME_SC_WRITE_FAULT,
} from './nvme-status';
import { FAULT, NvmeTestHost, PAGE } from './testing/nvme-test-host';

const dnr = (status: number): number => status | NVME_SC_DNR;
/** Bytes 0, 1, 2, ... (mod 251, so no page repeats another). */
const pattern = (length: number, seed = 0): Buffer => Buffer.from(Array.from({ length }, (_, i) => (i + seed) % 251));

interface Transfer {
  readonly slba: number | bigint;
  readonly blocks: number;
  readonly nsid?: number;
  readonly prp1: bigint;
  readonly prp2?: bigint;
  readonly cdw12?: number;
}

const rw = (opcode: number, t: Transfer) => ({
  opcode,
  nsid: t.nsid ?? 1,
  prp1: t.prp1,
  prp2: t.prp2 ?? 0n,
  cdw10: Number(BigInt(t.slba) & 0xffffffffn),
  cdw11: Number(BigInt(t.slba) >> 32n),
  cdw12: ((t.cdw12 ?? 0) | (t.blocks - 1)) >>> 0,
});

/** Writes `data` from host memory at `address` (PRPs as Linux builds them) to `slba`; returns the status. */
function writeAt(host: NvmeTestHost, address: bigint, data: Buffer, slba: number, nsid = 1, blockSize = 512): number {
  host.poke(address, data);
  return host.run(1, rw(NVME_CMD_WRITE, { slba, nsid, blocks: data.length / blockSize, ...host.prps(address, data.length) })).status;
}

function readAt(host: NvmeTestHost, address: bigint, length: number, slba: number, nsid = 1, blockSize = 512): { status: number; data: Buffer } {
  const status = host.run(1, rw(NVME_CMD_READ, { slba, nsid, blocks: length / blockSize, ...host.prps(address, length) })).status;
  return { status, data: host.peek(address, length) };
}

/** A heap namespace whose medium fails. */
class FailingStore extends HeapNamespaceStore {
  override readv(): void {
    throw errno('EIO', 'unreadable sector');
  }

  override writev(): void {
    throw errno('EIO', 'write failed');
  }
}

describe('nvme NVM command set', () => {
  describe('Write and Read', () => {
    it('moves a block with PRP1 only', () => {
      const host = NvmeTestHost.ready();
      const data = pattern(512);
      expect(writeAt(host, host.alloc(PAGE), data, 3)).to.equal(NVME_SC_SUCCESS);
      expect(host.ns1.data.subarray(3 * 512, 4 * 512)).to.deep.equal(data);
      expect(readAt(host, host.alloc(PAGE), 512, 3)).to.deep.equal({ status: NVME_SC_SUCCESS, data });
    });

    it('moves data that starts at an offset in PRP1 and ends in the PRP2 page', () => {
      const host = NvmeTestHost.ready();
      const buffer = host.alloc(2 * PAGE);
      const data = pattern(4096, 7);
      expect(host.prps(buffer + 0x600n, data.length).prp2, 'PRP2 is the second page').to.equal(buffer + BigInt(PAGE));
      expect(writeAt(host, buffer + 0x600n, data, 10)).to.equal(NVME_SC_SUCCESS);
      expect(host.ns1.data.subarray(10 * 512, 18 * 512)).to.deep.equal(data);
      expect(readAt(host, host.alloc(2 * PAGE) + 0x200n, 4096, 10).data).to.deep.equal(data);
    });

    it('moves data through a PRP list spanning many pages', () => {
      const host = NvmeTestHost.ready();
      const data = pattern(16 * PAGE, 3);
      expect(writeAt(host, host.alloc(17 * PAGE) + 0x400n, data, 100)).to.equal(NVME_SC_SUCCESS);
      expect(host.ns1.data.subarray(100 * 512, 100 * 512 + data.length)).to.deep.equal(data);
      expect(readAt(host, host.alloc(17 * PAGE), data.length, 100).data).to.deep.equal(data);
    });

    it('follows a PRP list whose last entry points at the next list page', () => {
      const host = NvmeTestHost.ready();
      const buffer = host.alloc(4 * PAGE);
      const lists = host.alloc(2 * PAGE);
      const first = lists + BigInt(PAGE) - 16n; // two slots: one page, then the pointer to the next list
      const firstList = Buffer.alloc(16);
      firstList.writeBigUInt64LE(buffer + BigInt(PAGE), 0);
      firstList.writeBigUInt64LE(lists + BigInt(PAGE), 8);
      host.poke(first, firstList);
      const next = Buffer.alloc(16);
      next.writeBigUInt64LE(buffer + 2n * BigInt(PAGE), 0);
      next.writeBigUInt64LE(buffer + 3n * BigInt(PAGE), 8);
      host.poke(lists + BigInt(PAGE), next);
      const data = pattern(4 * PAGE, 9);
      host.poke(buffer, data);
      expect(host.run(1, rw(NVME_CMD_WRITE, { slba: 0, blocks: 32, prp1: buffer, prp2: first })).status).to.equal(NVME_SC_SUCCESS);
      expect(host.ns1.data.subarray(0, data.length)).to.deep.equal(data);
    });

    it('moves 4 KiB blocks of a 4096-byte-block namespace', () => {
      const host = NvmeTestHost.ready({ namespaces: [new HeapNamespaceStore(16, 4096)] });
      const data = pattern(2 * 4096, 1);
      expect(writeAt(host, host.alloc(2 * PAGE), data, 14, 1, 4096)).to.equal(NVME_SC_SUCCESS);
      expect(readAt(host, host.alloc(2 * PAGE), data.length, 14, 1, 4096).data).to.deep.equal(data);
      expect(writeAt(host, host.alloc(2 * PAGE), data, 15, 1, 4096)).to.equal(dnr(NVME_SC_LBA_RANGE));
    });

    it('reports the bytes moved in the command event', () => {
      const host = NvmeTestHost.ready();
      writeAt(host, host.alloc(PAGE), pattern(1024), 0);
      expect(host.events.filter((e) => e.kind === 'command').at(-1)).to.include({ qid: 1, opcode: NVME_CMD_WRITE, status: NVME_SC_SUCCESS, bytes: 1024 });
    });

    it('accepts the last block of the namespace and refuses one past it with LBA Out of Range', () => {
      const host = NvmeTestHost.ready();
      expect(writeAt(host, host.alloc(PAGE), pattern(1024), 2046)).to.equal(NVME_SC_SUCCESS);
      expect(writeAt(host, host.alloc(PAGE), pattern(1024), 2047)).to.equal(dnr(NVME_SC_LBA_RANGE));
    });

    it('refuses an SLBA beyond 2^53 with LBA Out of Range', () => {
      const host = NvmeTestHost.ready();
      expect(host.run(1, rw(NVME_CMD_READ, { slba: 1n << 60n, blocks: 1, prp1: host.alloc(PAGE) })).status).to.equal(dnr(NVME_SC_LBA_RANGE));
    });

    for (const [what, nsid] of [
      ['NSID 0', 0],
      ['an NSID beyond NN', 2],
      ['the broadcast NSID', NVME_NSID_ALL],
    ] as const) {
      it(`refuses ${what} with Invalid Namespace or Format`, () => {
        const host = NvmeTestHost.ready();
        expect(host.run(1, rw(NVME_CMD_READ, { slba: 0, blocks: 1, nsid, prp1: host.alloc(PAGE) })).status).to.equal(dnr(NVME_SC_INVALID_NS));
      });
    }

    it('refuses a transfer beyond MDTS with Invalid Field, before the LBA range', () => {
      const host = NvmeTestHost.ready({ namespaces: [new HeapNamespaceStore(4096, 512)] });
      const blocks = NVME_MAX_TRANSFER_BYTES / 512 + 1;
      expect(host.run(1, rw(NVME_CMD_READ, { slba: 4000, blocks, prp1: host.alloc(PAGE) })).status).to.equal(dnr(NVME_SC_INVALID_FIELD));
    });

    it('completes a Write with Data Transfer Error when a page has no IOMMU translation, writing nothing', () => {
      const host = NvmeTestHost.ready();
      const buffer = host.alloc(PAGE);
      host.poke(buffer, pattern(PAGE));
      expect(host.run(1, rw(NVME_CMD_WRITE, { slba: 0, blocks: 16, prp1: buffer, prp2: FAULT })).status).to.equal(NVME_SC_DATA_XFER_ERROR);
      expect(host.ns1.data.subarray(0, 2 * PAGE).every((b) => b === 0)).to.equal(true);
    });

    it('completes a Read with Data Transfer Error when its buffer has no IOMMU translation', () => {
      const host = NvmeTestHost.ready();
      expect(host.run(1, rw(NVME_CMD_READ, { slba: 0, blocks: 1, prp1: FAULT })).status).to.equal(NVME_SC_DATA_XFER_ERROR);
    });

    it('completes with Data Transfer Error when the PRP list has no IOMMU translation', () => {
      const host = NvmeTestHost.ready();
      expect(host.run(1, rw(NVME_CMD_WRITE, { slba: 0, blocks: 24, prp1: host.alloc(PAGE), prp2: FAULT })).status).to.equal(NVME_SC_DATA_XFER_ERROR);
    });

    it('refuses a PRP2 page address with an offset with Invalid PRP Offset', () => {
      const host = NvmeTestHost.ready();
      const buffer = host.alloc(2 * PAGE);
      expect(host.run(1, rw(NVME_CMD_WRITE, { slba: 0, blocks: 16, prp1: buffer, prp2: buffer + BigInt(PAGE) + 0x10n })).status).to.equal(
        dnr(NVME_SC_PRP_INVALID_OFFSET),
      );
    });

    it('completes a failing read of the medium with Unrecovered Read Error and a failing write with Write Fault', () => {
      const host = NvmeTestHost.ready({ namespaces: [new FailingStore(64, 512)] });
      expect(readAt(host, host.alloc(PAGE), 512, 0).status).to.equal(NVME_SC_READ_ERROR);
      expect(writeAt(host, host.alloc(PAGE), pattern(512), 0)).to.equal(NVME_SC_WRITE_FAULT);
      const smart = host.alloc(PAGE);
      host.admin({ opcode: NVME_ADMIN_GET_LOG_PAGE, prp1: smart, cdw10: NVME_LOG_SMART | (127 << 16) });
      expect(host.peek(smart + 160n, 8).readBigUInt64LE(0), 'media and data integrity errors').to.equal(2n);
    });

    it('makes a write durable before it completes when the volatile write cache is off, or with FUA', () => {
      const host = NvmeTestHost.ready();
      writeAt(host, host.alloc(PAGE), pattern(512), 0);
      expect(host.ns1.flushes, 'write cache on: no flush').to.equal(0);
      expect(host.run(1, rw(NVME_CMD_WRITE, { slba: 0, blocks: 1, prp1: host.alloc(PAGE), cdw12: 1 << 30 })).status).to.equal(NVME_SC_SUCCESS);
      expect(host.ns1.flushes, 'FUA').to.equal(1);
      host.admin({ opcode: NVME_ADMIN_SET_FEATURES, cdw10: NVME_FEAT_VOLATILE_WC, cdw11: 0 });
      writeAt(host, host.alloc(PAGE), pattern(512), 0);
      expect(host.ns1.flushes, 'write cache off').to.equal(2);
    });
  });

  describe('Flush', () => {
    it('flushes the namespace it names', () => {
      const host = NvmeTestHost.ready({ namespaces: [new HeapNamespaceStore(8, 512), new HeapNamespaceStore(8, 512)] });
      expect(host.run(1, { opcode: NVME_CMD_FLUSH, nsid: 2 }).status).to.equal(NVME_SC_SUCCESS);
      expect(host.namespaces.map((ns) => (ns as HeapNamespaceStore).flushes)).to.deep.equal([0, 1]);
    });

    it('flushes every namespace for NSID FFFFFFFFh', () => {
      const host = NvmeTestHost.ready({ namespaces: [new HeapNamespaceStore(8, 512), new HeapNamespaceStore(8, 512)] });
      expect(host.run(1, { opcode: NVME_CMD_FLUSH, nsid: NVME_NSID_ALL }).status).to.equal(NVME_SC_SUCCESS);
      expect(host.namespaces.map((ns) => (ns as HeapNamespaceStore).flushes)).to.deep.equal([1, 1]);
    });

    it('refuses NSID 0 with Invalid Namespace or Format', () => {
      expect(NvmeTestHost.ready().run(1, { opcode: NVME_CMD_FLUSH, nsid: 0 }).status).to.equal(dnr(NVME_SC_INVALID_NS));
    });
  });

  describe('Write Zeroes', () => {
    it('zeroes the range, more than MDTS at once, and nothing around it', () => {
      const host = NvmeTestHost.ready({ namespaces: [new HeapNamespaceStore(4096, 512)] });
      host.ns1.data.fill(0xaa);
      const blocks = NVME_MAX_TRANSFER_BYTES / 512 + 100;
      expect(host.run(1, { opcode: NVME_CMD_WRITE_ZEROES, nsid: 1, cdw10: 10, cdw12: blocks - 1 }).status).to.equal(NVME_SC_SUCCESS);
      expect(host.ns1.data.subarray(10 * 512, (10 + blocks) * 512).every((b) => b === 0)).to.equal(true);
      expect([host.ns1.data[10 * 512 - 1], host.ns1.data[(10 + blocks) * 512]]).to.deep.equal([0xaa, 0xaa]);
    });

    it('refuses a range past the end with LBA Out of Range, zeroing nothing', () => {
      const host = NvmeTestHost.ready();
      host.ns1.data.fill(0xaa);
      expect(host.run(1, { opcode: NVME_CMD_WRITE_ZEROES, nsid: 1, cdw10: 2040, cdw12: 15 }).status).to.equal(dnr(NVME_SC_LBA_RANGE));
      expect(host.ns1.data.every((b) => b === 0xaa)).to.equal(true);
    });

    it('refuses an NSID with no namespace with Invalid Namespace or Format', () => {
      expect(NvmeTestHost.ready().run(1, { opcode: NVME_CMD_WRITE_ZEROES, nsid: 5 }).status).to.equal(dnr(NVME_SC_INVALID_NS));
    });
  });

  it('completes an I/O opcode it does not implement (Compare) with Invalid Command Opcode', () => {
    expect(NvmeTestHost.ready().run(1, { opcode: 0x05, nsid: 1 }).status).to.equal(dnr(NVME_SC_INVALID_OPCODE));
  });

  it('refuses a fused I/O command with Invalid Field', () => {
    expect(NvmeTestHost.ready().run(1, { opcode: NVME_CMD_FLUSH, nsid: 1, flags: 0x2 }).status).to.equal(dnr(NVME_SC_INVALID_FIELD));
  });
});
