import * as fs from 'node:fs';
import { expect } from 'chai';
import { RegistrySession } from '@p2p/dmabuf-client';
import { startDmabufRegistry } from '@p2p/dmabuf-registry';
import { ErrnoError } from '@p2p/errno';
import { startPciEmu } from '@p2p/pci-emu';
import { pci } from '@p2p/proto';
import type { RunningServer } from '@p2p/server';
import { listSegmentFiles, type SegmentInfo } from '@p2p/shm';
import { asAdmin, rejection, type ServiceProcess, startServiceProcess, tempShmDir } from '@p2p/testing';
import { rpc } from '../harness/rpc';

/** The segment files of `dir` by name and size: what a sweep would have changed. */
function segments(dir: string): Pick<SegmentInfo, 'name' | 'size'>[] {
  return listSegmentFiles(dir).map(({ name, size }) => ({ name, size }));
}

/** In-process start settings: loopback, a free port, no metrics endpoint, quiet. */
function inProcessEnv(shmDir: string): NodeJS.ProcessEnv {
  return {
    P2P_SHM_DIR: shmDir,
    LOG_LEVEL: 'silent',
    PCI_EMU_HOST: '127.0.0.1',
    PCI_EMU_PORT: '0',
    PCI_EMU_METRICS_PORT: '-1',
    DMABUF_REGISTRY_HOST: '127.0.0.1',
    DMABUF_REGISTRY_PORT: '0',
    DMABUF_REGISTRY_METRICS_PORT: '-1',
  };
}

async function startError(start: Promise<RunningServer>): Promise<ErrnoError> {
  const error = await rejection(start);
  expect(error).to.be.instanceOf(ErrnoError);
  return error as ErrnoError;
}

describe('one pci-emu per segment directory', function () {
  this.timeout(30000);
  let shmDir: string;
  let live: ServiceProcess | undefined;
  let client: pci.PciEmuServiceClient | undefined;

  beforeEach(() => {
    shmDir = tempShmDir();
  });

  afterEach(async () => {
    client?.close();
    await live?.stop();
    client = undefined;
    live = undefined;
    fs.rmSync(shmDir, { recursive: true, force: true });
  });

  /** Starts pci-emu as a process and writes `bytes` at the start of the accelerator's memory BAR. */
  async function startLive(bytes: Buffer): Promise<{ accel: pci.FunctionInfo; bar: number }> {
    live = await startServiceProcess('pci-emu', 'PCI_EMU', { env: { P2P_SHM_DIR: shmDir, LOG_LEVEL: 'warn' } });
    const admin = asAdmin(shmDir);
    client = new pci.PciEmuServiceClient(live.address, admin.credentials, admin.options);
    const { functions } = await rpc<pci.ListFunctionsResponse>((cb) => client!.listFunctions({}, cb));
    const accel = functions.find((f) => f.kind === pci.FunctionKind.FUNCTION_KIND_ACCEL)!;
    const bar = accel.bars.find((b) => b.kind === pci.BarKind.BAR_KIND_MEMORY)!.index;
    await rpc((cb) => client!.bulkWrite({ bdf: accel.bdf, bar, offset: 0n, data: bytes }, cb));
    return { accel, bar };
  }

  it('a second pci-emu process fails to start with EBUSY naming the directory and the live one, and unlinks none of its files', async () => {
    const bytes = Buffer.from('memory of the live pci-emu');
    const { accel, bar } = await startLive(bytes);
    const before = segments(shmDir);
    expect(before.length).to.be.greaterThan(0);

    const failure = String(await rejection(startServiceProcess('pci-emu', 'PCI_EMU', { env: { P2P_SHM_DIR: shmDir, LOG_LEVEL: 'warn' } })));
    expect(failure).to.include('EBUSY').and.to.include(shmDir).and.to.include(`pid ${live!.child.pid}`);

    expect(segments(shmDir)).to.deep.equal(before);
    const back = await rpc<pci.BulkReadResponse>((cb) => client!.bulkRead({ bdf: accel.bdf, bar, offset: 0n, length: BigInt(bytes.length) }, cb));
    expect(back.data.equals(bytes)).to.equal(true);
  });

  it('a second pci-emu in this process fails with ErrnoError EBUSY; once the first shuts down, the next one starts', async () => {
    const first = await startPciEmu(inProcessEnv(shmDir));
    const before = segments(shmDir);
    const error = await startError(startPciEmu(inProcessEnv(shmDir)));
    expect(error.errno).to.equal('EBUSY');
    expect(error.detail).to.include(shmDir).and.to.include(`pid ${process.pid}`);
    expect(segments(shmDir)).to.deep.equal(before);
    await first.shutdown('test');
    const next = await startPciEmu(inProcessEnv(shmDir));
    await next.shutdown('test');
    expect(segments(shmDir)).to.deep.equal([]);
  });

  it('a pci-emu killed with SIGKILL holds nothing: the next one starts and sweeps the dead one\'s files', async () => {
    await startLive(Buffer.from('dead memory'));
    const dead = segments(shmDir).map((info) => info.name);
    await live!.stop('SIGKILL');
    expect(segments(shmDir).map((info) => info.name)).to.deep.equal(dead);

    live = await startServiceProcess('pci-emu', 'PCI_EMU', { env: { P2P_SHM_DIR: shmDir, LOG_LEVEL: 'warn' } });
    const now = segments(shmDir).map((info) => info.name);
    expect(now.length).to.equal(dead.length);
    expect(now.filter((name) => dead.includes(name))).to.deep.equal([]);
  });
});

describe('one dmabuf-registry per segment directory', function () {
  this.timeout(30000);
  let shmDir: string;
  let live: ServiceProcess | undefined;
  let session: RegistrySession | undefined;

  beforeEach(() => {
    shmDir = tempShmDir();
  });

  afterEach(async () => {
    await session?.close();
    await live?.stop();
    session = undefined;
    live = undefined;
    fs.rmSync(shmDir, { recursive: true, force: true });
  });

  it('a second registry process fails to start with EBUSY naming the directory and the live one, and its heap segments are all still there', async () => {
    live = await startServiceProcess('dmabuf-registry', 'DMABUF_REGISTRY', { env: { P2P_SHM_DIR: shmDir, LOG_LEVEL: 'warn' } });
    session = await RegistrySession.open(live.address, { name: 'holder', shmDir });
    const { fd } = await session.heapAllocate(64 * 1024);
    const bytes = Buffer.from('a heap buffer of the live registry');
    await session.cpuWrite(fd, 0, bytes);
    const before = segments(shmDir);
    expect(before.map((info) => info.name).filter((name) => name.startsWith('dmabuf-heap.'))).to.have.length(1);

    const failure = String(await rejection(startServiceProcess('dmabuf-registry', 'DMABUF_REGISTRY', { env: { P2P_SHM_DIR: shmDir, LOG_LEVEL: 'warn' } })));
    expect(failure).to.include('EBUSY').and.to.include(shmDir).and.to.include(`pid ${live.child.pid}`);

    expect(segments(shmDir)).to.deep.equal(before);
    expect((await session.cpuRead(fd, 0, bytes.length)).equals(bytes)).to.equal(true);
  });

  it('pci-emu and the registry share a directory in one process, as npm start runs them, each kind once', async () => {
    const emu = await startPciEmu(inProcessEnv(shmDir));
    const registry = await startDmabufRegistry(inProcessEnv(shmDir));
    try {
      expect((await startError(startDmabufRegistry(inProcessEnv(shmDir)))).errno).to.equal('EBUSY');
      expect((await startError(startPciEmu(inProcessEnv(shmDir)))).errno).to.equal('EBUSY');
    } finally {
      await registry.shutdown('test');
      await emu.shutdown('test');
    }
  });
});
