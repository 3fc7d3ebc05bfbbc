/**
 * The README's revocation example: host Y (nic0) streams RDMA WRITEs of its
 * own memory into accel0's BAR, exported by vfio-pci as a dma-buf and
 * registered on host X's NIC (nic1), as in read-accel-bar. While the
 * traffic runs, the owner clears Memory Space in PCI_COMMAND (a config write
 * through vfio-pci): vfio-pci revokes the dma-buf
 * (vfio_pci_dma_buf_move()), the registry sends nic1 its move_notify, nic1
 * stops reaching the BAR and acks, and only then does the config write
 * return. Every WR still completes exactly once: those nic1 served before
 * SUCCESS, the first one after REM_ACCESS_ERR (nic1 NAKs it: the MR no
 * longer reaches memory), the rest WR_FLUSH_ERR (the QP went to ERR). No byte
 * reaches the BAR after the revoke returned. Then the owner sets Memory
 * Space again, re-registers the dma-buf and traffic flows again.
 *
 *   npm start                                   # in another terminal
 *   node tests/dist/examples/revoke-under-traffic.js
 *
 * Addresses: DMABUF_REGISTRY_ADDRESS, VFIO_PCI_ADDRESS, PCI_EMU_ADDRESS,
 * RDMA_NIC_A_ADDRESS (host Y's NIC) and RDMA_NIC_B_ADDRESS (host X's NIC);
 * the defaults are npm start's. Binding accel0 and reading the BAR's memory
 * from pci-emu (to check what landed) are the administrator's: its token
 * comes from `.admin-token` in the segment directory (P2P_SHM_DIR), as
 * npm start leaves it. With P2P_TLS_CA (and P2P_TLS_CERT/P2P_TLS_KEY for
 * mutual TLS) set, every call goes over TLS.
 */
import { loadTlsConfig, readAdminToken } from '@p2p/auth';
import { rdma, vfio } from '@p2p/proto';
import { connectPeer } from '@p2p/rpc';
import { resolveShmDir } from '@p2p/shm';
import { pciRegs } from '@p2p/vfio-pci';
import { IBV_ACCESS_LOCAL_WRITE, IBV_ACCESS_REMOTE_WRITE } from '@p2p/verbs';
import { deviceMemory, type PlatformAccess } from '../harness/device-memory';
import { ACCEL0, RdmaHost } from '../harness/rdma-hosts';
import { type CompletionTally, notLanded, patterned, tallyCompletions, Transfer, wcStatusName } from '../harness/rdma-transfer';
import { exampleMain } from '../harness/run-example';
import { writePciCommand } from '@p2p/user-driver';

const { PCI_COMMAND_MEMORY, PCI_COMMAND_MASTER } = pciRegs;
const BAR2 = 2;
const ACCESS = IBV_ACCESS_LOCAL_WRITE | IBV_ACCESS_REMOTE_WRITE;
const IOVA = 0x1_0000_0000;
/** What one RegionWrite carries at most here: well under the 16 MiB gRPC message limit. */
const REGION_WRITE_BYTES = 4 << 20;

export interface RevokeUnderTrafficOptions {
  readonly registry: string;
  readonly vfioPci: string;
  readonly pciEmu: string;
  readonly nicY: string;
  readonly nicX: string;
  /** The segment directory of the services; default P2P_SHM_DIR. */
  readonly shmDir?: string;
  /** The administrator's token; default P2P_ADMIN_TOKEN, else `.admin-token` in shmDir. */
  readonly adminToken?: string;
  /** WRs in the stream (default 512) of `size` bytes each (default 64 KiB). */
  readonly count?: number;
  readonly size?: number;
  /** Memory Space is cleared once this many WRs completed; default 40. */
  readonly revokeAfter?: number;
  /** Where progress lines go; default nowhere. */
  readonly log?: (line: string) => void;
}

export interface RevokeUnderTrafficResult {
  /** WRs completed when the config write was sent, and how long it took to return. */
  readonly completedAtRevoke: number;
  readonly revokeMs: number;
  /** How the stream's WRs completed. */
  readonly tally: CompletionTally;
  /** Successful WRs whose bytes were not in the BAR when the revoke returned (none expected). */
  readonly missing: number[];
  /** Whether the BAR's bytes changed after the revoke returned (they must not). */
  readonly changedAfterRevoke: boolean;
  /** The stream after Memory Space was set again and the dma-buf re-registered. */
  readonly again: { readonly tally: CompletionTally; readonly missing: number[] };
}

/** A tally as one line: "97 SUCCESS, 1 REM_ACCESS_ERR (wr 97), 414 WR_FLUSH_ERR". */
function describeTally(tally: CompletionTally): string {
  const failed = tally.failed.map((f) => `1 ${wcStatusName(f.status)} (wr ${f.wrId})`);
  return [`${tally.succeeded.length} SUCCESS`, ...failed, ...(tally.flushed.length > 0 ? [`${tally.flushed.length} WR_FLUSH_ERR`] : [])].join(', ');
}

/** Whether the run showed what it should: the RC contract kept, nothing late, traffic back. */
export function revokedCleanly(result: RevokeUnderTrafficResult): boolean {
  const { tally, again } = result;
  return (
    tally.everyOnce &&
    tally.inPostOrder &&
    tally.failed.length === 1 &&
    result.missing.length === 0 &&
    !result.changedAfterRevoke &&
    again.tally.everyOnce &&
    again.tally.succeeded.length === again.tally.posted &&
    again.missing.length === 0
  );
}

/** Runs the example; resolves to how every WR completed and what the BAR held. */
export async function revokeUnderTraffic(options: RevokeUnderTrafficOptions): Promise<RevokeUnderTrafficResult> {
  const count = options.count ?? 512;
  const size = options.size ?? 64 * 1024;
  const length = count * size;
  const log = options.log ?? ((): void => undefined);
  const shmDir = options.shmDir ?? resolveShmDir();
  const tls = loadTlsConfig();
  const platform: PlatformAccess = { pciEmu: options.pciEmu, adminToken: options.adminToken ?? readAdminToken(shmDir), tls };
  const bar = (): Promise<Buffer> => deviceMemory(platform, ACCEL0, BAR2, 0, length);

  const y = await RdmaHost.open('host-y-app', options.registry, options.nicY, shmDir);
  const x = await RdmaHost.open('host-x-app', options.registry, options.nicX, shmDir);
  const vfioPci = connectPeer(vfio.VfioPciServiceDefinition, options.vfioPci, { name: 'vfio-pci', tls, token: x.session.credential });
  try {
    // Host X: accel0's BAR2 (bound to vfio-pci by the administrator), exported and registered on nic1.
    const target = await x.barBuffer(options.vfioPci, 0, length, IOVA, ACCESS);
    const { deviceFd } = target;
    const setCommand = (value: number): Promise<void> => writePciCommand(vfioPci.client, x.session.pid, deviceFd, value);
    const clearBar = async (bytes: number): Promise<void> => {
      for (let at = 0; at < bytes; at += REGION_WRITE_BYTES) {
        const data = Buffer.alloc(Math.min(REGION_WRITE_BYTES, bytes - at));
        await vfioPci.client.regionWrite({ pid: x.session.pid, deviceFd, index: BAR2, offset: BigInt(at), data });
      }
    };
    await setCommand(PCI_COMMAND_MEMORY | PCI_COMMAND_MASTER);
    await clearBar(length);
    log(`host X (pid ${x.session.pid}): accel0's BAR2, ${length >> 20} MiB, exported by vfio-pci (dma-buf fd ${target.fd}) and registered on nic1 (rkey 0x${target.mr.rkey.toString(16)}), cleared`);

    // Host Y: its memory, each WR's slice filled with its own pattern, streamed into the BAR.
    const source = await y.hostBuffer(length, IOVA, ACCESS);
    await source.cpu.copyFromBuffer(0, patterned(count, size));
    const stream = async (mr: { rkey: number }, wrs: number): Promise<Transfer> => {
      const a = await y.rcQp();
      const b = await x.rcQp();
      await y.ctx.connectRc(a.qpNum, { gid: x.gid, qpNum: b.qpNum }, { access: ACCESS });
      await x.ctx.connectRc(b.qpNum, { gid: y.gid, qpNum: a.qpNum }, { access: ACCESS });
      return new Transfer({
        host: y,
        qpNum: a.qpNum,
        cq: a.cq,
        opcode: rdma.WrOpcode.WR_OPCODE_RDMA_WRITE,
        count: wrs,
        size,
        local: { key: source.mr.lkey, iova: IOVA },
        remote: { key: mr.rkey, iova: IOVA },
        depth: 32,
      });
    };
    const transfer = await stream(target.mr, count);
    log(`host Y (pid ${y.session.pid}): ${count} RDMA WRITEs of ${size >> 10} KiB from its memory into the BAR through nic0 -> nic1, 32 in flight`);
    const running = transfer.run();
    await transfer.whenCompleted(options.revokeAfter ?? 40);

    // The owner clears Memory Space: the config write returns once every importer stopped.
    const completedAtRevoke = transfer.completions.size;
    const started = performance.now();
    await setCommand(PCI_COMMAND_MASTER);
    const revokeMs = performance.now() - started;
    const atRevoke = await bar();
    log(`host X: PCI_COMMAND.MEMORY cleared through vfio-pci after ${completedAtRevoke} completions; the config write (the revoke) returned in ${revokeMs.toFixed(1)} ms`);

    await running;
    await transfer.settled(10_000);
    transfer.close();
    const tally = tallyCompletions(transfer);
    log(`host Y: ${describeTally(tally)}`);
    log(`host Y: ${tally.everyOnce ? `every one of the ${tally.posted} WRs completed exactly once` : `NOT every WR completed exactly once (${tally.runs.join(', ')})`}${tally.inPostOrder ? ', in post order' : ', out of order'}`);
    // Anything still in flight had a generous moment to land, were it going to.
    await new Promise((resolve) => setTimeout(resolve, 200));
    const changedAfterRevoke = !(await bar()).equals(atRevoke);
    const missing = notLanded(atRevoke, tally.succeeded, size);
    log(`the BAR when the revoke returned held ${missing.length === 0 ? 'every' : `NOT every (missing: ${missing.join(' ')})`} successful WR's bytes; 200 ms later it was ${changedAfterRevoke ? 'CHANGED' : 'unchanged'}`);

    // Memory Space set again: the dma-buf is valid again; a fresh MR and QP pair carry traffic.
    await setCommand(PCI_COMMAND_MEMORY | PCI_COMMAND_MASTER);
    const againCount = Math.min(16, count);
    await clearBar(againCount * size);
    await x.ctx.deregMr(target.mr.mrHandle);
    const mr = await x.ctx.regDmabufMr(x.pd, { fd: target.fd, offset: 0, length, iova: IOVA, access: ACCESS });
    const again = await stream(mr, againCount);
    await again.run();
    await again.settled(10_000);
    again.close();
    const againTally = tallyCompletions(again);
    const againMissing = notLanded(await bar(), againTally.succeeded, size);
    log(
      `host X: PCI_COMMAND.MEMORY set again, the dma-buf re-registered (rkey 0x${mr.rkey.toString(16)}), a new QP pair: ${againCount} WRITEs, ${describeTally(againTally)}, ` +
        `${againMissing.length === 0 ? 'their bytes in the BAR' : `bytes missing for ${againMissing.join(' ')}`}`,
    );
    return { completedAtRevoke, revokeMs, tally, missing, changedAfterRevoke, again: { tally: againTally, missing: againMissing } };
  } finally {
    vfioPci.close();
    await x.close();
    await y.close();
  }
}

if (require.main === module) {
  exampleMain(
    revokeUnderTraffic({
      registry: process.env.DMABUF_REGISTRY_ADDRESS ?? '127.0.0.1:50053',
      vfioPci: process.env.VFIO_PCI_ADDRESS ?? '127.0.0.1:50052',
      pciEmu: process.env.PCI_EMU_ADDRESS ?? '127.0.0.1:50051',
      nicY: process.env.RDMA_NIC_A_ADDRESS ?? '127.0.0.1:50054',
      nicX: process.env.RDMA_NIC_B_ADDRESS ?? '127.0.0.1:50055',
      log: (line) => console.log(line),
    }),
    (result) =>
      revokedCleanly(result)
        ? { ok: true, line: "accel0's BAR revoked under traffic: every work request completed once, nothing landed after the revoke" }
        : { ok: false, line: "accel0's BAR revoked under traffic: the RC contract or the revoke was broken (see above)" },
  );
}
