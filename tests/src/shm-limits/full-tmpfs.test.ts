import * as fs from 'node:fs';
import * as path from 'node:path';
import { expect } from 'chai';
import { RegistrySession } from '@p2p/dmabuf-client';
import { ErrnoError } from '@p2p/errno';
import { pci } from '@p2p/proto';
import { listSegmentFiles, SegmentStore, SharedMemory } from '@p2p/shm';
import { errnoOf } from '@p2p/status';
import { asAdmin, rejection, type ServiceProcess, startServiceProcess } from '@p2p/testing';
import { healthCheck } from '../harness/generic-clients';
import { expectErrno, rpc } from '../harness/rpc';
import { SMALL_TMPFS_BYTES, useSmallTmpfs } from './small-tmpfs';

const KiB = 1024;
const MORE_THAN_FITS = 2 * SMALL_TMPFS_BYTES;

describe('segments on a full tmpfs: writes fail with ENOSPC, the process lives on', () => {
  const tmpfs = useSmallTmpfs();
  afterEach(() => {
    for (const name of fs.readdirSync(tmpfs())) fs.rmSync(path.join(tmpfs(), name));
  });

  it('Segment.write past the free space throws ENOSPC, and pages already allocated still take writes', () => {
    const store = new SegmentStore({ dir: tmpfs(), chunkSize: 4 * SMALL_TMPFS_BYTES });
    const segment = store.create('big', MORE_THAN_FITS);
    expect(() => segment.write(0, Buffer.alloc(MORE_THAN_FITS, 0xab)))
      .to.throw(ErrnoError)
      .with.property('errno', 'ENOSPC');
    segment.write(0, Buffer.from('after ENOSPC'));
    expect(segment.read(0, 12).toString()).to.equal('after ENOSPC');
    segment.close();
  });

  it('SharedMemory.write across chunk files throws ENOSPC, and writes succeed again once space is freed', () => {
    const store = new SegmentStore({ dir: tmpfs(), chunkSize: 256 * KiB });
    const full = SharedMemory.create(store, 'full', MORE_THAN_FITS);
    expect(() => full.write(0, Buffer.alloc(MORE_THAN_FITS, 0xcd)))
      .to.throw(ErrnoError)
      .with.property('errno', 'ENOSPC');
    full.destroy();
    const next = SharedMemory.create(store, 'next', SMALL_TMPFS_BYTES / 2);
    next.write(0, Buffer.alloc(SMALL_TMPFS_BYTES / 2, 0xef));
    expect(next.read(SMALL_TMPFS_BYTES / 2 - 1, 1)).to.deep.equal(Buffer.from([0xef]));
    next.destroy();
  });
});

describe('pci-emu on a full segment tmpfs (a separate process)', function () {
  this.timeout(30000);
  const tmpfs = useSmallTmpfs();
  let service: ServiceProcess;
  let client: pci.PciEmuServiceClient;
  let accel: pci.FunctionInfo;
  let bar: number;

  beforeEach(async () => {
    service = await startServiceProcess('pci-emu', 'PCI_EMU', { env: { P2P_SHM_DIR: tmpfs(), LOG_LEVEL: 'warn' } });
    // BulkWrite and MmioWrite are the platform's and the administrator's.
    const admin = asAdmin(tmpfs());
    client = new pci.PciEmuServiceClient(service.address, admin.credentials, admin.options);
    const { functions } = await rpc<pci.ListFunctionsResponse>((cb) => client.listFunctions({}, cb));
    accel = functions.find((f) => f.kind === pci.FunctionKind.FUNCTION_KIND_ACCEL)!;
    bar = accel.bars.find((b) => b.kind === pci.BarKind.BAR_KIND_MEMORY)!.index;
  });

  afterEach(async () => {
    client?.close();
    await service?.stop();
  });

  const bulkWrite = (offset: number, data: Buffer): Promise<pci.BulkWriteResponse> =>
    rpc((cb) => client.bulkWrite({ bdf: accel.bdf, bar, offset: BigInt(offset), data }, cb));
  const bulkRead = async (offset: number, length: number): Promise<Buffer> =>
    (await rpc<pci.BulkReadResponse>((cb) => client.bulkRead({ bdf: accel.bdf, bar, offset: BigInt(offset), length: BigInt(length) }, cb))).data;

  it('answers a BulkWrite larger than the free space with ENOSPC and keeps serving', async () => {
    await expectErrno(bulkWrite(0, Buffer.alloc(MORE_THAN_FITS, 0x5a)), 'ENOSPC');
    expect(service.child.signalCode).to.equal(null);
    expect(await healthCheck(service.address)).to.equal('SERVING');
    await bulkWrite(0, Buffer.from('still writable'));
    expect((await bulkRead(0, 14)).toString()).to.equal('still writable');
  });

  it('answers an MmioWrite to an untouched page of a full tmpfs with ENOSPC and keeps serving', async () => {
    await expectErrno(bulkWrite(0, Buffer.alloc(MORE_THAN_FITS, 0x5a)), 'ENOSPC');
    await expectErrno(rpc((cb) => client.mmioWrite({ bdf: accel.bdf, bar, offset: BigInt(64 * SMALL_TMPFS_BYTES), width: 8, value: 1n }, cb)), 'ENOSPC');
    expect(await healthCheck(service.address)).to.equal('SERVING');
  });

  it('answers a RelocateBar whose copy does not fit with ENOSPC, leaving the BAR and its bytes where they were', async () => {
    const written = Buffer.alloc((SMALL_TMPFS_BYTES * 3) / 4, 0x42);
    await bulkWrite(0, written);
    const before = listSegmentFiles(tmpfs()).map((info) => info.name);
    await expectErrno(rpc((cb) => client.relocateBar({ bdf: accel.bdf, bar }, cb)), 'ENOSPC');
    expect(listSegmentFiles(tmpfs()).map((info) => info.name)).to.deep.equal(before);
    expect((await bulkRead(0, written.length)).equals(written)).to.equal(true);
    expect(await healthCheck(service.address)).to.equal('SERVING');
  });
});

describe('dmabuf-registry on a full segment tmpfs (a separate process)', function () {
  this.timeout(30000);
  const tmpfs = useSmallTmpfs();
  let registry: ServiceProcess;
  let session: RegistrySession;

  beforeEach(async () => {
    registry = await startServiceProcess('dmabuf-registry', 'DMABUF_REGISTRY', { env: { P2P_SHM_DIR: tmpfs(), LOG_LEVEL: 'warn' } });
    session = await RegistrySession.open(registry.address, { name: 'filler', shmDir: tmpfs() });
  });

  afterEach(async () => {
    await session?.close();
    await registry?.stop();
  });

  it('answers a CpuWrite into a heap buffer larger than the free space with ENOSPC and keeps serving', async () => {
    const { fd } = await session.heapAllocate(MORE_THAN_FITS);
    expect(errnoOf(await rejection(session.cpuWrite(fd, 0, Buffer.alloc(MORE_THAN_FITS, 0x77))))).to.equal('ENOSPC');
    expect(await healthCheck(registry.address)).to.equal('SERVING');
    expect((await session.cpuRead(fd, 0, 4)).equals(Buffer.alloc(4, 0x77))).to.equal(true);
  });
});
