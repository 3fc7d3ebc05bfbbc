import { execFile } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { expect } from 'chai';
import { ErrnoError } from '@p2p/errno';
import { SHM_IDENTITY_FILE, shmIdentity } from './shm-identity';
import { useTempShmDir } from '@p2p/testing';

const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/;

/**
 * Runs shmIdentity(dir) in a separate process that starts the call at
 * `startAt` (epoch ms). `beforeLink` is code run just before the child's
 * link(2), to stage a rival that wins the race deterministically.
 */
function identityInChild(dir: string, startAt: number, beforeLink = ''): Promise<string> {
  const script = `
    const fs = require('node:fs');
    const link = fs.linkSync;
    fs.linkSync = (from, to) => { ${beforeLink}; return link(from, to); };
    const { shmIdentity } = require(${JSON.stringify(path.join(__dirname, 'shm-identity.js'))});
    while (Date.now() < ${startAt}) {}
    process.stdout.write(shmIdentity(${JSON.stringify(dir)}));
  `;
  return new Promise((resolve, reject) => {
    execFile(process.execPath, ['-e', script], (error, stdout, stderr) => (error ? reject(new Error(`${error.message}\n${stderr}`)) : resolve(stdout)));
  });
}

describe('shmIdentity', () => {
  const dir = useTempShmDir();

  it('creates .p2p-shm-id with a random UUID, mode 0600, and returns it again later', () => {
    const id = shmIdentity(dir());
    expect(id).to.match(UUID);
    const file = path.join(dir(), SHM_IDENTITY_FILE);
    expect(fs.readFileSync(file, 'utf8').trim()).to.equal(id);
    expect(fs.statSync(file).mode & 0o777).to.equal(0o600);
    expect(shmIdentity(dir())).to.equal(id);
    expect(fs.readdirSync(dir())).to.deep.equal([SHM_IDENTITY_FILE]);
  });

  it('gives different directories different ids and one directory the same id under any path', () => {
    const other = fs.mkdtempSync(path.join(dir(), 'other-'));
    const alias = path.join(dir(), 'alias');
    fs.symlinkSync(dir(), alias);
    expect(shmIdentity(other)).to.not.equal(shmIdentity(dir()));
    expect(shmIdentity(alias)).to.equal(shmIdentity(dir()));
  });

  it('reads an existing id as found', () => {
    fs.writeFileSync(path.join(dir(), SHM_IDENTITY_FILE), 'host-a-tmpfs\n');
    expect(shmIdentity(dir())).to.equal('host-a-tmpfs');
  });

  it('refuses an empty id file with EINVAL and a missing directory with ENOENT', () => {
    fs.writeFileSync(path.join(dir(), SHM_IDENTITY_FILE), '');
    expect(() => shmIdentity(dir())).to.throw(ErrnoError).with.property('errno', 'EINVAL');
    expect(() => shmIdentity(path.join(dir(), 'missing'))).to.throw(ErrnoError).with.property('errno', 'ENOENT');
  });

  it('does not follow a symlink planted as the id file', () => {
    const elsewhere = path.join(dir(), 'elsewhere');
    fs.writeFileSync(elsewhere, 'borrowed-id\n');
    fs.symlinkSync(elsewhere, path.join(dir(), SHM_IDENTITY_FILE));
    expect(() => shmIdentity(dir())).to.throw(ErrnoError);
  });

  it('agrees on one id when processes create it at the same moment', async function () {
    this.timeout(30_000);
    for (let round = 0; round < 3; round++) {
      const shared = fs.mkdtempSync(path.join(dir(), `race-${round}-`));
      const startAt = Date.now() + 500;
      const ids = await Promise.all(Array.from({ length: 6 }, () => identityInChild(shared, startAt)));
      expect(ids[0]).to.match(UUID);
      expect(new Set(ids).size, ids.join(' ')).to.equal(1);
      expect(fs.readdirSync(shared)).to.deep.equal([SHM_IDENTITY_FILE]);
    }
  });

  it('returns the winner\'s id when another process links its file first', async () => {
    const file = path.join(dir(), SHM_IDENTITY_FILE);
    const rival = `fs.writeFileSync(${JSON.stringify(file)}, 'rival-id\\n', { flag: 'wx', mode: 0o600 })`;
    expect(await identityInChild(dir(), 0, rival)).to.equal('rival-id');
    expect(fs.readdirSync(dir())).to.deep.equal([SHM_IDENTITY_FILE]);
  });
});
