import { expect } from 'chai';
import { nvmePrpSegments, type PrpListReader } from './nvme-prp';
import { NVME_SC_DATA_XFER_ERROR, NVME_SC_DNR, NVME_SC_PRP_INVALID_OFFSET, NVME_SC_SUCCESS } from './nvme-status';

const PAGE = 4096;
const P = BigInt(PAGE);
const INVALID_OFFSET = NVME_SC_PRP_INVALID_OFFSET | NVME_SC_DNR;

/** PRP lists by address; reads record which lists were read, and how many entries. */
function lists(pages: Readonly<Record<string, readonly bigint[]>>): { reader: PrpListReader; reads: Array<[bigint, number]> } {
  const reads: Array<[bigint, number]> = [];
  const reader: PrpListReader = (address, target) => {
    reads.push([address, target.length / 8]);
    const entries = pages[address.toString(16)];
    if (entries === undefined) return NVME_SC_DATA_XFER_ERROR;
    entries.slice(0, target.length / 8).forEach((entry, i) => target.writeBigUInt64LE(entry, i * 8));
    return NVME_SC_SUCCESS;
  };
  return { reader, reads };
}

const none: PrpListReader = () => {
  throw new Error('no PRP list expected');
};

describe('nvme PRP walk', () => {
  it('describes data within one page with PRP1 alone, offset included', () => {
    expect(nvmePrpSegments(0x10_0200n, 0xdeadn, 512, PAGE, none)).to.deep.equal([{ address: 0x10_0200n, length: 512 }]);
  });

  it('takes PRP2 as the second page when the data ends there', () => {
    expect(nvmePrpSegments(0x10_0c00n, 0x20_0000n, 2048, PAGE, none)).to.deep.equal([
      { address: 0x10_0c00n, length: 1024 },
      { address: 0x20_0000n, length: 1024 },
    ]);
  });

  it('takes PRP2 as a PRP list beyond two pages, reading only the entries it needs', () => {
    const { reader, reads } = lists({ '300000': [0x40_0000n, 0x50_0000n, 0x60_0000n] });
    expect(nvmePrpSegments(0x10_0000n, 0x30_0000n, 3 * PAGE + 100, PAGE, reader)).to.deep.equal([
      { address: 0x10_0000n, length: PAGE },
      { address: 0x40_0000n, length: PAGE },
      { address: 0x50_0000n, length: PAGE },
      { address: 0x60_0000n, length: 100 },
    ]);
    expect(reads).to.deep.equal([[0x30_0000n, 3]]);
  });

  it('follows the last entry of a full list page to the next list page', () => {
    const listAt = 0x30_0000n + P - 24n; // three slots left in the page: two pages, then the chain
    const { reader, reads } = lists({ [listAt.toString(16)]: [0xa000n, 0xb000n, 0x70_0000n], '700000': [0xc000n, 0xd000n] });
    const segments = nvmePrpSegments(0x1000n, listAt, 5 * PAGE, PAGE, reader);
    expect(segments).to.deep.equal([0x1000n, 0xa000n, 0xb000n, 0xc000n, 0xd000n].map((address) => ({ address, length: PAGE })));
    expect(reads).to.deep.equal([
      [listAt, 3],
      [0x70_0000n, 2],
    ]);
  });

  it('uses the page size CC.MPS selected', () => {
    const big = 16 * PAGE;
    expect(nvmePrpSegments(0x10_0000n, 0x20_0000n, 2 * big, big, none)).to.deep.equal([
      { address: 0x10_0000n, length: big },
      { address: 0x20_0000n, length: big },
    ]);
  });

  it('describes no memory for no data', () => {
    expect(nvmePrpSegments(0x3n, 0x5n, 0, PAGE, none)).to.deep.equal([]);
  });

  for (const [what, prp1, prp2, length, pages] of [
    ['a PRP1 that is not dword aligned', 0x1002n, 0n, 16, {}],
    ['a PRP2 page address with an offset', 0x1000n, 0x2010n, 2 * PAGE, {}],
    ['a PRP list pointer that is not qword aligned', 0x1000n, 0x3004n, 3 * PAGE, {}],
    ['a PRP list entry with an offset', 0x1000n, 0x3000n, 3 * PAGE, { '3000': [0x4000n, 0x5200n] }],
    ['a chained list pointer with an offset', 0x1000n, 0x3ff0n, 4 * PAGE, { '3ff0': [0x4000n, 0x9008n] }],
  ] as const) {
    it(`refuses ${what} with Invalid PRP Offset`, () => {
      expect(nvmePrpSegments(prp1, prp2, length, PAGE, lists(pages).reader)).to.equal(INVALID_OFFSET);
    });
  }

  it('stops at a PRP list it cannot read, with the reader’s status', () => {
    expect(nvmePrpSegments(0x1000n, 0x3000n, 3 * PAGE, PAGE, lists({}).reader)).to.equal(NVME_SC_DATA_XFER_ERROR);
  });
});
