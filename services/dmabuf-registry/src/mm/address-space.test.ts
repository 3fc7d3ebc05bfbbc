import { expect } from 'chai';
import { PAGE_SIZE } from '@p2p/shm';
import { AddressSpace } from './address-space';
import { MMAP_BASE, MMAP_MIN_ADDR, TASK_SIZE } from './layout';
import { PROT_READ } from './prot';
import { Vma } from './vma';

const P = PAGE_SIZE;

/** A VMA of file `file` over [start, start + pages pages), showing the file from `offset`. */
function vma(start: number, pages: number, file = 'f', offset = 0): Vma<string> {
  return new Vma(start, start + pages * P, file, offset, PROT_READ, false);
}

/** [start, end, file, offset] of every VMA, lowest first. */
function layout(space: AddressSpace<string>): [number, number, string, number][] {
  return space.vmas().map((v) => [v.start, v.end, v.file, v.offset]);
}

describe('AddressSpace', () => {
  describe('placement (get_unmapped_area)', () => {
    it('places top-down from mmap_base: each mapping right below the lowest one', () => {
      const space = new AddressSpace<string>();
      const first = space.place(2 * P, 0)!;
      expect(first).to.equal(MMAP_BASE - 2 * P);
      space.insert(vma(first, 2));
      expect(space.place(P, 0)).to.equal(MMAP_BASE - 3 * P);
    });

    it('fills the highest hole that fits, skipping holes too small', () => {
      const space = new AddressSpace<string>();
      space.insert(vma(MMAP_BASE - P, 1));
      space.insert(vma(MMAP_BASE - 3 * P, 1)); // a one-page hole at MMAP_BASE - 2P
      space.insert(vma(MMAP_BASE - 8 * P, 2)); // a three-page hole at MMAP_BASE - 6P
      expect(space.place(P, 0)).to.equal(MMAP_BASE - 2 * P);
      expect(space.place(2 * P, 0)).to.equal(MMAP_BASE - 5 * P);
      expect(space.place(4 * P, 0)).to.equal(MMAP_BASE - 12 * P);
    });

    it('ignores mappings above mmap_base when placing without a hint', () => {
      const space = new AddressSpace<string>();
      space.insert(vma(MMAP_BASE + 10 * P, 1));
      expect(space.place(P, 0)).to.equal(MMAP_BASE - P);
    });

    it('takes a free hint rounded up to a page, and places as without one when the hint is taken or out of range', () => {
      const space = new AddressSpace<string>();
      expect(space.place(P, 0x4000_0000 + 1)).to.equal(0x4000_0000 + P);
      space.insert(vma(0x4000_0000, 4));
      expect(space.place(P, 0x4000_0000 + P)).to.equal(MMAP_BASE - P);
      expect(space.place(P, MMAP_MIN_ADDR - P)).to.equal(MMAP_BASE - P);
      expect(space.place(2 * P, TASK_SIZE - P)).to.equal(MMAP_BASE - 2 * P);
    });

    it('finds no room for more than the space below mmap_base', () => {
      expect(new AddressSpace<string>().place(MMAP_BASE - MMAP_MIN_ADDR + P, 0)).to.equal(undefined);
      expect(new AddressSpace<string>().place(MMAP_BASE - MMAP_MIN_ADDR, 0)).to.equal(MMAP_MIN_ADDR);
    });
  });

  describe('unmap (do_vmi_munmap)', () => {
    it('splits a VMA with the range strictly inside it, the right piece showing the file further on', () => {
      const space = new AddressSpace<string>();
      space.insert(vma(0x10_0000, 4, 'f', 8 * P));
      expect(space.countAfterUnmap(0x10_0000 + P, 0x10_0000 + 2 * P)).to.equal(2);
      const { removed, kept } = space.unmap(0x10_0000 + P, 0x10_0000 + 2 * P);
      expect(removed).to.have.length(1);
      expect(kept).to.have.length(2);
      expect(layout(space)).to.deep.equal([
        [0x10_0000, 0x10_0000 + P, 'f', 8 * P],
        [0x10_0000 + 2 * P, 0x10_0000 + 4 * P, 'f', 10 * P],
      ]);
    });

    it('trims VMAs across either end, removes those inside, and skips holes', () => {
      const space = new AddressSpace<string>();
      space.insert(vma(0x10_0000, 2, 'a'));
      space.insert(vma(0x10_0000 + 3 * P, 1, 'b'));
      space.insert(vma(0x10_0000 + 5 * P, 2, 'c'));
      expect(space.countAfterUnmap(0x10_0000 + P, 0x10_0000 + 6 * P)).to.equal(2);
      const { removed, kept } = space.unmap(0x10_0000 + P, 0x10_0000 + 6 * P);
      expect(removed.map((v) => v.file)).to.deep.equal(['a', 'b', 'c']);
      expect(kept.map((v) => v.file)).to.deep.equal(['a', 'c']);
      expect(layout(space)).to.deep.equal([
        [0x10_0000, 0x10_0000 + P, 'a', 0],
        [0x10_0000 + 6 * P, 0x10_0000 + 7 * P, 'c', P],
      ]);
    });

    it('changes nothing for a range with no mapping', () => {
      const space = new AddressSpace<string>();
      space.insert(vma(0x10_0000, 1));
      expect(space.unmap(0x20_0000, 0x30_0000)).to.deep.equal({ removed: [], kept: [] });
      expect(space.count).to.equal(1);
    });
  });

  it('cuts a range into mapped pieces and holes, in address order (the page walk)', () => {
    const space = new AddressSpace<string>();
    space.insert(vma(0x10_0000 + P, 2, 'a'));
    space.insert(vma(0x10_0000 + 3 * P, 1, 'b'));
    const pieces = space.pieces(0x10_0000, 0x10_0000 + 5 * P);
    expect(pieces.map((p) => [p.start - 0x10_0000, p.end - 0x10_0000, p.vma?.file, p.vma?.offset])).to.deep.equal([
      [0, P, undefined, undefined],
      [P, 3 * P, 'a', 0],
      [3 * P, 4 * P, 'b', 0],
      [4 * P, 5 * P, undefined, undefined],
    ]);
    expect(space.pieces(0x10_0000 + 2 * P, 0x10_0000 + 3 * P).map((p) => [p.vma?.file, p.vma?.offset])).to.deep.equal([['a', P]]);
  });

  it('refuses to insert over a mapping, and tells free ranges from taken ones', () => {
    const space = new AddressSpace<string>();
    space.insert(vma(0x10_0000, 2));
    expect(space.isFree(0x10_0000 + 2 * P, 0x10_0000 + 3 * P)).to.equal(true);
    expect(space.isFree(0x10_0000 - P, 0x10_0000 + 1)).to.equal(false);
    expect(() => space.insert(vma(0x10_0000 + P, 2))).to.throw(/overlaps/);
  });
});
