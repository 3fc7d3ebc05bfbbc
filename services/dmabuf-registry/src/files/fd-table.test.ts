import { expect } from 'chai';
import type { OwnerRecord } from '../owners/owner-record';
import { FdTable, FIRST_FD } from './fd-table';
import { RegistryFile } from './registry-file';

describe('FdTable', () => {
  const file = (id: number): RegistryFile => new RegistryFile(id, {} as OwnerRecord, `h${id}`, 0);

  it('hands out the lowest free fd, from 3 (0-2 stay stdio)', () => {
    const table = new FdTable();
    expect(FIRST_FD).to.equal(3);
    expect([table.install(file(1)), table.install(file(2)), table.install(file(3))]).to.deep.equal([3, 4, 5]);
  });

  it('reuses a freed fd before going higher, lowest first', () => {
    const table = new FdTable();
    for (let i = 0; i < 6; i++) table.install(file(i));
    table.remove(7);
    table.remove(4);
    table.putUnused(7);
    table.putUnused(4);
    expect(table.install(file(10))).to.equal(4);
    expect(table.install(file(11))).to.equal(7);
    expect(table.install(file(12))).to.equal(9);
  });

  it('lists entries lowest fd first and forgets removed ones', () => {
    const table = new FdTable();
    const a = file(1);
    const b = file(2);
    table.install(a);
    table.install(b);
    expect(table.remove(3)).to.equal(a);
    expect(table.remove(3)).to.equal(undefined);
    table.putUnused(3);
    table.install(a);
    expect(table.entries().map(([fd, f]) => [fd, f.fileId])).to.deep.equal([
      [3, 1],
      [4, 2],
    ]);
  });

  it('keeps a removed fd’s number taken until its close is done', () => {
    const table = new FdTable();
    table.install(file(1));
    table.install(file(2));
    table.remove(3);
    expect(table.get(3)).to.equal(undefined);
    expect(table.install(file(3))).to.equal(5);
    table.putUnused(3);
    expect(table.install(file(4))).to.equal(3);
  });
});
