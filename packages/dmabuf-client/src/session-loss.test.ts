import * as fs from 'node:fs';
import { expect } from 'chai';
import { ErrnoError } from '@p2p/errno';
import { SegmentStore, SharedMemory } from '@p2p/shm';
import { OwnerSession } from './owner-session';
import { RegistrySession } from './registry-session';
import { SharedMemoryExporter } from './shared-memory-exporter';
import { rejection, platformSecretsOf } from '@p2p/testing';
import { type RegistryProcess, startRegistry } from './testing/registry-process';

const SIZE = 64 * 1024;

describe('losing the registry', function () {
  this.timeout(30_000);
  let registry: RegistryProcess | undefined;

  before(function () {
  });
  afterEach(async () => {
    await registry?.stop('SIGKILL');
    registry = undefined;
  });

  for (const signal of ['SIGKILL', 'SIGTERM'] as const) {
    it(`fails safe when the registry dies (${signal}): mappings dropped before 'lost', then ESHUTDOWN everywhere`, async () => {
      registry = await startRegistry();
      const session = await RegistrySession.open(registry.address, { name: 'spdk', shmDir: registry.shmDir });
      const store = new SegmentStore({ dir: registry.shmDir });
      const exporter = new SharedMemoryExporter(store);
      exporter.addBuffer('bar', SharedMemory.create(store, 'bar', SIZE), 0n);
      const owner = await OwnerSession.open(registry.address, { credential: platformSecretsOf(registry.shmDir).platformToken, name: 'vfio-pci', shmDir: registry.shmDir, ops: exporter });
      const exported = await owner.exportDmaBuf({ pid: session.pid, size: SIZE, handle: 'bar' });
      const heap = await session.heapAllocate(SIZE);
      const importers = await Promise.all([
        session.importDmaBuf({ fd: heap.fd, importerBdf: '' }),
        session.importDmaBuf({ fd: exported.fd, importerBdf: '0000:02:00.0' }),
      ]);
      for (const importer of importers) await importer.write(0, Buffer.from('in use'));

      const lost = new Promise<{ error: ErrnoError; mappedAtEvent: boolean[] }>((resolve) =>
        session.on('lost', (error) => resolve({ error, mappedAtEvent: importers.map((i) => i.mapped) })),
      );
      const ownerLost = new Promise<ErrnoError>((resolve) => owner.on('lost', resolve));
      await registry.stop(signal);

      const { error, mappedAtEvent } = await lost;
      expect(mappedAtEvent).to.deep.equal([false, false]);
      expect(error.errno).to.equal('ESHUTDOWN');
      expect(error.message).to.include(`was lost (incarnation ${session.incarnation})`).and.include('must open a new session');
      expect(session.state).to.equal('lost');
      for (const importer of importers) {
        expect(importer.state).to.equal('session-ended');
        const refused = await rejection(importer.read(0, 6));
        expect(refused).to.be.instanceOf(ErrnoError).with.property('errno', 'ESHUTDOWN');
        expect((refused as Error).message).to.include('was lost');
        expect(await rejection(importer.write(0, Buffer.from('x')))).to.have.property('errno', 'ESHUTDOWN');
        expect(await rejection(importer.detach())).to.have.property('errno', 'ESHUTDOWN');
      }
      expect(await rejection(session.heapAllocate(SIZE))).to.have.property('errno', 'ESHUTDOWN');
      expect(await rejection(session.importDmaBuf({ fd: heap.fd, importerBdf: '' }))).to.have.property('errno', 'ESHUTDOWN');

      expect((await ownerLost).errno).to.equal('ESHUTDOWN');
      expect(await rejection(owner.move(exported.bufferId, true))).to.have.property('errno', 'ESHUTDOWN');
      await session.close();
      await owner.close();
      expect(session.state).to.equal('lost');
    });
  }

  it('rejects open() with the gRPC error when no registry answers', async () => {
    const shmDir = fs.mkdtempSync('/dev/shm/p2p-dmabuf-client-none-');
    try {
      const error = await rejection(RegistrySession.open('127.0.0.1:1', { name: 'nobody', shmDir }));
      expect(error).to.have.property('code');
    } finally {
      fs.rmSync(shmDir, { recursive: true, force: true });
    }
  });
});
