/**
 * The README's fencing example: an importer that stops answering cannot
 * hold a revoke hostage. A process (a child process of this one:
 * tests/dist/dmabuf-registry/processes/importer.js) maps a dma-buf of
 * accel0's BAR2 that the owner exported through vfio-pci. It is frozen
 * (SIGSTOP), as a hung driver would be. The owner clears Memory Space in
 * PCI_COMMAND: vfio-pci revokes the dma-buf and the registry sends the
 * frozen importer its move_notify, which it cannot ack. Past
 * DMABUF_REGISTRY_ACK_TIMEOUT_MS (1000 under npm start) the registry fences
 * it (FENCE in its events): it detaches the importer and vfio-pci moves the
 * BAR's memory to fresh segments, so the config write returns in bounded
 * time. Woken (SIGCONT), the importer writes through its stale mapping, as
 * its device's DMA would: the bytes reach a file the BAR has left, and the
 * BAR, once Memory Space is set again, holds what it held.
 *
 *   npm start                                   # in another terminal
 *   node tests/dist/examples/fence-frozen-importer.js
 *
 * Addresses: DMABUF_REGISTRY_ADDRESS, VFIO_PCI_ADDRESS and PCI_EMU_ADDRESS;
 * the defaults are npm start's. Binding accel0, watching the registry's
 * events and reading the BAR's memory from pci-emu are the administrator's:
 * its token comes from `.admin-token` in the segment directory
 * (P2P_SHM_DIR), as npm start leaves it.
 */
import { readAdminToken } from '@p2p/auth';
import { RegistrySession } from '@p2p/dmabuf-client';
import { dmabuf, vfio } from '@p2p/proto';
import { connectPeer } from '@p2p/rpc';
import { resolveShmDir } from '@p2p/shm';
import { pciRegs } from '@p2p/vfio-pci';
import { EventLog, eventually, HelperProcess, processState } from '../dmabuf-registry/fixtures';
import { deviceMemory } from '../harness/device-memory';
import { exportDeviceRange } from '../harness/nvme-cmb-target';
import { bindToVfio } from '../harness/nvme-stack';
import { ACCEL0, NIC1 } from '../harness/rdma-hosts';
import { exampleMain } from '../harness/run-example';
import { writePciCommand } from '@p2p/user-driver';

const { PCI_COMMAND_MEMORY, PCI_COMMAND_MASTER } = pciRegs;
const { EventKind } = dmabuf;
const BAR2 = 2;
/** What the owner's device holds, and what the woken importer writes. */
const DEVICE_BYTE = 0xa1;
const LATE_BYTE = 0xd1;

export interface FenceFrozenImporterOptions {
  readonly registry: string;
  readonly vfioPci: string;
  readonly pciEmu: string;
  /** The segment directory of the services; default P2P_SHM_DIR. */
  readonly shmDir?: string;
  /** Bytes exported; default 64 KiB. */
  readonly length?: number;
  /** Where progress lines go; default nowhere. */
  readonly log?: (line: string) => void;
}

export interface FenceFrozenImporterResult {
  /** How long the config write clearing Memory Space (the revoke) took. */
  readonly revokeMs: number;
  /** The registry's FENCE event: the frozen importer's pid and attachment. */
  readonly fence: { readonly pid: number; readonly attachmentId: bigint };
  readonly importerPid: number;
  readonly importerAttachment: bigint;
  /** The segment files the importer mapped: where its stale mapping writes. */
  readonly importerSegments: string[];
  /** The importer's state once woken ('fenced'), and the errno its library write got. */
  readonly importerState: string;
  readonly libraryWrite: string;
  /** The BAR before the freeze and after the late write (Memory Space set again). */
  readonly before: Buffer;
  readonly after: Buffer;
}

/** Runs the example; resolves to what the registry did and what the BAR held. */
export async function fenceFrozenImporter(options: FenceFrozenImporterOptions): Promise<FenceFrozenImporterResult> {
  const length = options.length ?? 64 * 1024;
  const log = options.log ?? ((): void => undefined);
  const shmDir = options.shmDir ?? resolveShmDir();
  const adminToken = readAdminToken(shmDir);
  const bar = (): Promise<Buffer> => deviceMemory({ pciEmu: options.pciEmu, adminToken }, ACCEL0, BAR2, 0, length);

  const owner = await RegistrySession.open(options.registry, { name: 'accel0-owner', shmDir });
  const vfioPci = connectPeer(vfio.VfioPciServiceDefinition, options.vfioPci, { name: 'vfio-pci', token: owner.credential });
  const events = await EventLog.open(options.registry, shmDir);
  let importer: HelperProcess | undefined;
  try {
    // The owner: accel0 through vfio-pci, its memory decoded and holding something, BAR2's first bytes exported.
    await bindToVfio(shmDir, options.vfioPci, ACCEL0);
    const { fd: deviceFd } = await vfioPci.client.openDevice({ pid: owner.pid, bdf: ACCEL0 });
    const setCommand = (value: number): Promise<void> => writePciCommand(vfioPci.client, owner.pid, deviceFd, value);
    await setCommand(PCI_COMMAND_MEMORY | PCI_COMMAND_MASTER);
    await vfioPci.client.regionWrite({ pid: owner.pid, deviceFd, index: BAR2, offset: 0n, data: Buffer.alloc(length, DEVICE_BYTE) });
    const fd = await exportDeviceRange(owner, { device: vfioPci.client }, { fd: deviceFd }, BAR2, 0, length);
    const before = await bar();
    log(`owner (pid ${owner.pid}): accel0's BAR2, ${length >> 10} KiB of 0x${DEVICE_BYTE.toString(16)}, exported by vfio-pci as dma-buf fd ${fd}`);

    // The importer: its own process; it receives the fd, attaches dynamically and maps the buffer.
    const started = await HelperProcess.start('importer', [options.registry, shmDir, 'frozen-importer']);
    importer = started.helper;
    const importerPid = started.ready['pid'] as number;
    const attached = await importer.ok(`attach ${await owner.sendFd(fd, importerPid)} ${NIC1}`);
    const importerAttachment = BigInt(attached['attachmentId'] as string);
    const importerSegments = attached['segments'] as string[];
    const read = (await importer.ok('read 0 4'))['data'] as string;
    log(`importer (pid ${importerPid}, process ${importer.pid}): attachment ${importerAttachment} as ${NIC1}, mapped (${importerSegments.join(' ')}); it reads ${read}`);

    importer.signal('SIGSTOP');
    await eventually('the importer to be stopped', () => processState(importer!.pid) === 'T');
    log(`importer: frozen (SIGSTOP)`);

    // The revoke: it returns once every importer acked or was fenced.
    const t0 = performance.now();
    await setCommand(PCI_COMMAND_MASTER);
    const revokeMs = performance.now() - t0;
    log(`owner: PCI_COMMAND.MEMORY cleared through vfio-pci; the config write (the revoke) returned in ${revokeMs.toFixed(0)} ms`);
    const fenced = await events.waitFor(EventKind.EVENT_KIND_FENCE, { attachmentId: importerAttachment });
    const bufferId = fenced.bufferId;
    const revoked = events.of(EventKind.EVENT_KIND_REVOKE, { bufferId }).at(-1)?.sequence ?? 0n;
    const moves = events.events.filter((e) => e.bufferId === bufferId && e.sequence >= revoked && e.sequence <= fenced.sequence);
    log(`registry events: ${moves.map((e) => `${EventKind[e.kind].replace('EVENT_KIND_', '')}${e.pid === 0 ? '' : ` pid ${e.pid}`}`).join(', ')}`);

    // Woken, the importer writes through the mapping it took before the revoke, as its device's DMA would.
    importer.signal('SIGCONT');
    await importer.ok(`dma 0 0x${LATE_BYTE.toString(16)} ${length}`);
    await eventually('the importer to learn it was fenced', async () => (await importer!.ok('state'))['state'] === 'fenced');
    const importerState = (await importer.ok('state'))['state'] as string;
    const late = await importer.command(`write 0 0x${LATE_BYTE.toString(16)} 4`);
    const libraryWrite = late.ok === true ? 'accepted' : String(late.errno);
    log(`importer: woken (SIGCONT), it wrote ${length >> 10} KiB of 0x${LATE_BYTE.toString(16)} through its stale mapping; its library says ${importerState} (a write through it: ${libraryWrite})`);

    await setCommand(PCI_COMMAND_MEMORY | PCI_COMMAND_MASTER);
    const after = await bar();
    log(`owner: PCI_COMMAND.MEMORY set again; accel0's BAR2 ${after.equals(before) ? `still holds ${length >> 10} KiB of 0x${DEVICE_BYTE.toString(16)}` : 'CHANGED'}`);
    return { revokeMs, fence: { pid: fenced.pid, attachmentId: fenced.attachmentId }, importerPid, importerAttachment, importerSegments, importerState, libraryWrite, before, after };
  } finally {
    await importer?.kill();
    events.close();
    vfioPci.close();
    await owner.close();
  }
}

if (require.main === module) {
  exampleMain(
    fenceFrozenImporter({
      registry: process.env.DMABUF_REGISTRY_ADDRESS ?? '127.0.0.1:50053',
      vfioPci: process.env.VFIO_PCI_ADDRESS ?? '127.0.0.1:50052',
      pciEmu: process.env.PCI_EMU_ADDRESS ?? '127.0.0.1:50051',
      log: (line) => console.log(line),
    }),
    ({ revokeMs, fence, importerPid, after, before }) =>
      fence.pid === importerPid && after.equals(before)
        ? { ok: true, line: `the registry fenced the frozen importer: the revoke returned in ${revokeMs.toFixed(0)} ms, its late write reached nothing` }
        : { ok: false, line: 'the frozen importer was not fenced, or its late write reached the BAR' },
  );
}
