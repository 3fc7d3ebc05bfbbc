import * as fs from 'node:fs';
import type Table from 'cli-table3';
import { OwnerSession, RegistrySession, SharedMemoryExporter } from '@p2p/dmabuf-client';
import { Registry, SegmentFileAccess, type FileOwner } from '@p2p/dmabuf-registry';
import { SegmentStore, SharedMemory } from '@p2p/shm';
import { startServiceProcess, platformSecretsOf } from '@p2p/testing';
import { tempShmDir } from '@p2p/testing';
import { percentile, timeEach } from './stats';

const BUFFER = 2 * 1024 * 1024;

/**
 * dmabuf-registry figures, with the registry as its own process and every
 * session in this one: the attach/map/unmap/detach cycle of an importer, the
 * time a revoke takes to return with N dynamic importers (each must ack its
 * move_notify first), and the registry's memory per live buffer.
 */
export async function benchRegistry(rows: Table.Table): Promise<void> {
  const shmDir = tempShmDir();
  const service = await startServiceProcess('dmabuf-registry', 'DMABUF_REGISTRY', { env: { P2P_SHM_DIR: shmDir, LOG_LEVEL: 'warn' } });
  const sessions: Array<RegistrySession | OwnerSession> = [];
  try {
    const store = new SegmentStore({ dir: shmDir });
    const exporter = new SharedMemoryExporter(store);
    const owner = await OwnerSession.open(service.address, { credential: platformSecretsOf(shmDir).platformToken, name: 'bench-exporter', shmDir, ops: exporter });
    const holder = await RegistrySession.open(service.address, { name: 'holder', shmDir });
    sessions.push(owner, holder);

    // The baseline: one unary round trip to the same registry.
    await timeEach(100, () => holder.listProcesses());
    const rpcs = await timeEach(500, () => holder.listProcesses());
    const rpcP50 = percentile(rpcs, 50);
    const rpcP99 = percentile(rpcs, 99);
    rows.push(['registry unary RPC round trip (ListProcesses, baseline)', `p50 ${ms(rpcP50)}`, `p99 ${ms(rpcP99)}`]);
    const versus = (p50: number, p99: number): string => `(${(p50 / rpcP50).toFixed(1)}x, ${(p99 / rpcP99).toFixed(1)}x one RPC)`;

    const heap = await holder.heapAllocate(BUFFER);
    const cycle = async (): Promise<void> => {
      const importer = await holder.importDmaBuf({ fd: heap.fd, importerBdf: '' });
      await importer.map();
      await importer.unmap();
      await importer.detach();
    };
    await timeEach(50, cycle);
    const cycles = await timeEach(500, cycle);
    rows.push(['registry attach+map+unmap+detach (4 RPCs)', `p50 ${ms(percentile(cycles, 50))}`, `p99 ${ms(percentile(cycles, 99))} ${versus(percentile(cycles, 50), percentile(cycles, 99))}`]);

    for (const count of [1, 8, 64]) {
      const handle = `bar-${count}`;
      exporter.addBuffer(handle, SharedMemory.create(store, `bench-${handle}`, BUFFER), 0xe000_0000n);
      const { bufferId, fd } = await owner.exportDmaBuf({ pid: holder.pid, size: BUFFER, handle, requirePeer2peer: true });
      const importers = await Promise.all(
        Array.from({ length: count }, async (_, i) => {
          const nic = await RegistrySession.open(service.address, { name: `nic-${i}`, shmDir, privilegedCredential: platformSecretsOf(shmDir).platformToken });
          sessions.push(nic);
          return nic.importDmaBuf({ fd, holderPid: holder.pid, importerBdf: '0000:04:00.0' });
        }),
      );
      const revokes: number[] = [];
      const rounds = count === 64 ? 20 : 60;
      for (let round = 0; round < rounds; round++) {
        await Promise.all(importers.map((importer) => importer.map()));
        const start = process.hrtime.bigint();
        await owner.move(bufferId, true);
        revokes.push(Number(process.hrtime.bigint() - start) / 1e3);
        await owner.move(bufferId, false);
      }
      revokes.sort((a, b) => a - b);
      rows.push([
        `revoke with ${count} mapped dynamic importer${count > 1 ? 's' : ''} (until all acked)`,
        `p50 ${ms(percentile(revokes, 50))}`,
        `p99 ${ms(percentile(revokes, 99))} ${versus(percentile(revokes, 50), percentile(revokes, 99))}`,
      ]);
    }
  } finally {
    for (const session of sessions.reverse()) await session.close().catch(() => undefined);
    await service.stop();
    fs.rmSync(shmDir, { recursive: true, force: true });
  }
  rows.push(['registry memory per live buffer (10,000 buffers x 4 attachments, in process)', `${(await memoryPerBuffer(10_000, 4) / 1024).toFixed(2)} KiB`, 'heap delta / buffers']);
}

/** Heap bytes per buffer of a Registry holding `buffers` exported buffers with `attachments` dynamic attachments each. */
async function memoryPerBuffer(buffers: number, attachments: number): Promise<number> {
  const noop = async (): Promise<void> => undefined;
  const owner: FileOwner = {
    name: 'bench',
    shmId: 'bench',
    directory: '/nonexistent',
    release: noop,
    attach: noop,
    detach: noop,
    map: async () => [],
    unmap: noop,
    pin: noop,
    unpin: noop,
    fence: noop,
    cpuExtents: async () => [],
  };
  const gc = (globalThis as { gc?: () => void }).gc;
  gc?.();
  const before = process.memoryUsage().heapUsed;
  const registry = new Registry({ p2p: { mapType: async () => 'BUS_ADDR' }, segments: new SegmentFileAccess() });
  registry.registerOwner(owner);
  const notifier = { moveNotify: () => undefined, fenced: () => undefined };
  const holder = registry.openProcess('holder');
  const importers = Array.from({ length: attachments }, (_, i) => registry.openProcess(`nic-${i}`, notifier));
  for (let b = 0; b < buffers; b++) {
    const { fd } = registry.exportDmaBuf('bench', { pid: holder, size: 4096, openFlags: 2, revoked: false, cpuAccess: false, allowPin: false, requirePeer2peer: true, handle: `b${b}` });
    for (const importerPid of importers) {
      await registry.attach({ pid: holder, fd, importerPid, importerBdf: '0000:04:00.0', dynamic: true, peer2peer: true, shmId: 'bench' });
    }
  }
  gc?.();
  const perBuffer = (process.memoryUsage().heapUsed - before) / buffers;
  if (registry.bufInfo().length !== buffers) throw new Error('the registry lost buffers');
  return perBuffer;
}

function ms(us: number): string {
  return `${(us / 1000).toFixed(2)} ms`;
}
