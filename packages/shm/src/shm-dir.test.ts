import * as fs from 'node:fs';
import * as path from 'node:path';
import { expect } from 'chai';
import { ErrnoError } from '@p2p/errno';
import { DEFAULT_SHM_DIR, SHM_DIR_ENV, resolveShmDir } from './shm-dir';
import { useTempShmDir } from '@p2p/testing';

describe('resolveShmDir', () => {
  const dir = useTempShmDir();

  it('defaults to /dev/shm/p2p-dmabuf', () => {
    expect(DEFAULT_SHM_DIR).to.equal('/dev/shm/p2p-dmabuf');
    expect(SHM_DIR_ENV).to.equal('P2P_SHM_DIR');
  });

  it('creates the directory from P2P_SHM_DIR with mode 0700', () => {
    const wanted = path.join(dir(), 'nested', 'segments');
    expect(resolveShmDir({ P2P_SHM_DIR: wanted })).to.equal(wanted);
    const stat = fs.statSync(wanted);
    expect(stat.isDirectory()).to.equal(true);
    expect(stat.mode & 0o777).to.equal(0o700);
  });

  it('uses an existing directory as found', () => {
    fs.chmodSync(dir(), 0o750);
    expect(resolveShmDir({ P2P_SHM_DIR: dir() })).to.equal(dir());
    expect(fs.statSync(dir()).mode & 0o777).to.equal(0o750);
  });

  it('rejects a relative path with EINVAL and a file with EEXIST', () => {
    expect(() => resolveShmDir({ P2P_SHM_DIR: 'relative/dir' })).to.throw(ErrnoError).with.property('errno', 'EINVAL');
    const file = path.join(dir(), 'file');
    fs.writeFileSync(file, '');
    expect(() => resolveShmDir({ P2P_SHM_DIR: file })).to.throw(ErrnoError).with.property('errno', 'EEXIST');
  });
});
