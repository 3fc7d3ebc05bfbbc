import { type ChildProcess, spawn } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';
import * as readline from 'node:readline';
import { expect } from 'chai';
import { ErrnoError } from '@p2p/errno';
import { useTempShmDir } from '@p2p/testing';
import { listSegmentFiles } from './accounting';
import { PAGE_SIZE } from './limits';
import { SegmentStore } from './segment-store';
import { claimShmDir } from './shm-dir-claim';

/** A node process that claims `dir` for `kind` and holds it until killed; resolves once it holds. */
async function holdInChild(dir: string, kind: string): Promise<ChildProcess> {
  const script = `
    require(${JSON.stringify(path.join(__dirname, 'index.js'))})
      .claimShmDir(${JSON.stringify(dir)}, ${JSON.stringify(kind)})
      .then(() => { console.log('held'); setInterval(() => {}, 60_000); }, (e) => { console.error(e.message); process.exit(2); });`;
  const child = spawn(process.execPath, ['-e', script], { stdio: ['ignore', 'pipe', 'pipe'] });
  const stderr: string[] = [];
  child.stderr!.on('data', (chunk: Buffer) => stderr.push(chunk.toString()));
  await new Promise<void>((resolve, reject) => {
    readline.createInterface({ input: child.stdout! }).once('line', () => resolve());
    child.once('exit', (code) => reject(new Error(`holder exited with ${code}: ${stderr.join('')}`)));
  });
  return child;
}

async function kill(child: ChildProcess, signal: NodeJS.Signals): Promise<void> {
  const exited = new Promise((resolve) => child.once('exit', resolve));
  child.kill(signal);
  await exited;
}

async function claimError(dir: string, kind: string): Promise<ErrnoError> {
  try {
    await claimShmDir(dir, kind);
  } catch (error) {
    expect(error).to.be.instanceOf(ErrnoError);
    return error as ErrnoError;
  }
  return expect.fail(`claiming ${dir} for ${kind} succeeded`);
}

describe('claimShmDir', () => {
  const dir = useTempShmDir();
  let children: ChildProcess[];
  beforeEach(() => {
    children = [];
  });
  afterEach(async () => {
    for (const child of children) if (child.exitCode === null && child.signalCode === null) await kill(child, 'SIGKILL');
  });

  it('holds <dir>/.<kind>.lock until released, then lets the next claimant in', async () => {
    const claim = await claimShmDir(dir(), 'pci-emu');
    expect(claim.lockPath).to.equal(path.join(dir(), '.pci-emu.lock'));
    expect(fs.readdirSync(dir())).to.deep.equal(['.pci-emu.lock']);
    await claim.release();
    expect(fs.readdirSync(dir())).to.deep.equal([]);
    const next = await claimShmDir(dir(), 'pci-emu');
    await next.release();
  });

  it('refuses a second claim of the same kind in the same process with EBUSY naming the directory and this pid', async () => {
    const claim = await claimShmDir(dir(), 'pci-emu');
    const error = await claimError(dir(), 'pci-emu');
    expect(error.errno).to.equal('EBUSY');
    expect(error.detail).to.include(dir()).and.to.include(`pid ${process.pid}`).and.to.include('pci-emu');
    await claim.release();
  });

  it('lets each kind hold the same directory once, as the services of one process do', async () => {
    const emu = await claimShmDir(dir(), 'pci-emu');
    const registry = await claimShmDir(dir(), 'dmabuf-registry');
    expect((await claimError(dir(), 'dmabuf-registry')).errno).to.equal('EBUSY');
    await emu.release();
    await registry.release();
  });

  it('refuses a claim held by another process with EBUSY naming that process', async () => {
    const holder = await holdInChild(dir(), 'pci-emu');
    children.push(holder);
    const error = await claimError(dir(), 'pci-emu');
    expect(error.errno).to.equal('EBUSY');
    expect(error.detail).to.include(dir()).and.to.include(`pid ${holder.pid}`);
  });

  it('counts a stopped holder as alive', async () => {
    const holder = await holdInChild(dir(), 'pci-emu');
    children.push(holder);
    holder.kill('SIGSTOP');
    const error = await claimError(dir(), 'pci-emu');
    expect(error.errno).to.equal('EBUSY');
    expect(error.detail).to.include('did not say who it is');
    holder.kill('SIGCONT');
  });

  it('takes over the lock of a holder that died without releasing it (SIGKILL)', async () => {
    const holder = await holdInChild(dir(), 'pci-emu');
    children.push(holder);
    await kill(holder, 'SIGKILL');
    expect(fs.readdirSync(dir())).to.deep.equal(['.pci-emu.lock']);
    const claim = await claimShmDir(dir(), 'pci-emu');
    expect((await claimError(dir(), 'pci-emu')).detail).to.include(`pid ${process.pid}`);
    await claim.release();
    expect(fs.readdirSync(dir())).to.deep.equal([]);
  });

  it('lets exactly one of several claimants racing for a stale lock win, and leaves no other file behind', async () => {
    const holder = await holdInChild(dir(), 'pci-emu');
    children.push(holder);
    await kill(holder, 'SIGKILL');
    const results = await Promise.allSettled([1, 2, 3, 4].map(() => claimShmDir(dir(), 'pci-emu')));
    const won = results.flatMap((result) => (result.status === 'fulfilled' ? [result.value] : []));
    const lost = results.flatMap((result) => (result.status === 'rejected' ? [(result.reason as ErrnoError).errno] : []));
    expect(won).to.have.length(1);
    expect(lost).to.deep.equal(['EBUSY', 'EBUSY', 'EBUSY']);
    expect(fs.readdirSync(dir())).to.deep.equal(['.pci-emu.lock']);
    await won[0]!.release();
  });

  it('keeps the lock out of the segment listing', async () => {
    const store = new SegmentStore({ dir: dir(), chunkSize: PAGE_SIZE });
    store.create('pci-emu.0', PAGE_SIZE).close();
    const claim = await claimShmDir(dir(), 'pci-emu');
    expect(listSegmentFiles(dir()).map((info) => info.name)).to.deep.equal(['pci-emu.0']);
    await claim.release();
  });

  it('refuses a kind that is not a plain file name with EINVAL', async () => {
    for (const kind of ['', '.hidden', 'a/b', '..']) {
      expect((await claimError(dir(), kind)).errno, JSON.stringify(kind)).to.equal('EINVAL');
    }
  });

  it('refuses a directory too long for a socket path with EINVAL naming P2P_SHM_DIR', async () => {
    const long = path.join(dir(), 'd'.repeat(100));
    fs.mkdirSync(long);
    const error = await claimError(long, 'pci-emu');
    expect(error.errno).to.equal('EINVAL');
    expect(error.detail).to.include('P2P_SHM_DIR');
  });
});
