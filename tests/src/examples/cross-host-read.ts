/**
 * Across hosts: host A's NIC reads host B's accel0 BAR with one RDMA READ,
 * straight into host A's memory. The two hosts share nothing but the NICs'
 * wire: host B's vfio-pci exports BAR2's first `length` bytes as a dma-buf,
 * host B's NIC registers it (remote read allowed); host A's NIC registers a
 * buffer of host A's memory; this process connects an RC QP on each NIC to
 * the other (QPN, GID and rkey pass through it: the out-of-band exchange a
 * real application does over TCP) and posts the READ on host A's QP.
 *
 * This process lives on neither host's tmpfs: it fills accel0 through host
 * B's vfio-pci (RegionWrite of BAR2) and reads host A's buffer back through
 * host A's registry (CpuRead), as a process outside the hosts does. So it
 * runs anywhere that reaches the hosts' gRPC ports: beside two local
 * stacks, in a container on the hosts' overlay network (Docker swarm), or in
 * a pod of the cluster (Kubernetes).
 *
 *   HOST_A_REGISTRY_ADDRESS=10.0.1.5:50053 HOST_A_NIC_ADDRESS=10.0.1.6:50054 \
 *   HOST_B_REGISTRY_ADDRESS=10.0.1.9:50053 HOST_B_VFIO_PCI_ADDRESS=10.0.1.8:50052 \
 *   HOST_B_NIC_ADDRESS=10.0.1.10:50054 HOST_B_ADMIN_TOKEN=... \
 *   node tests/dist/examples/cross-host-read.js
 *
 * Addresses: HOST_A_REGISTRY_ADDRESS and HOST_A_NIC_ADDRESS (the reader);
 * HOST_B_REGISTRY_ADDRESS, HOST_B_VFIO_PCI_ADDRESS and HOST_B_NIC_ADDRESS
 * (the host whose accel0 is read). Any NIC of host B will do: in the default
 * topology nic1 sits beside accel0 (P2P through their switch), nic0 across
 * the host bridge (p2pAllowed), which is the one NIC of a Kubernetes pod.
 * HOST_A_NAME and HOST_B_NAME name the hosts in the last line (default
 * host-a, host-b). READ_BYTES: how much to read (default 1 MiB).
 *
 * Binding accel0 to vfio-pci is host B's administrator's: the token comes
 * from HOST_B_ADMIN_TOKEN, else P2P_ADMIN_TOKEN, else `.admin-token` in
 * HOST_B_SHM_DIR (host B's segment directory, when this process can read
 * it). With P2P_TLS_CA (and P2P_TLS_CERT/P2P_TLS_KEY for mutual TLS) set,
 * every call goes over TLS.
 */
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { loadTlsConfig, readAdminToken, type TlsConfig } from '@p2p/auth';
import { RegistrySession } from '@p2p/dmabuf-client';
import { rdma, vfio } from '@p2p/proto';
import { connectPeer } from '@p2p/rpc';
import { errnoOf } from '@p2p/status';
import { IBV_ACCESS_LOCAL_WRITE, IBV_ACCESS_REMOTE_READ, IBV_SEND_SIGNALED, VerbsContext } from '@p2p/verbs';
import { exampleMain } from '../harness/run-example';

const ACCEL0 = '0000:07:00.0';
const BAR2 = 2;
/** The config space region (VFIO_PCI_CONFIG_REGION_INDEX) and PCI_COMMAND's offset in it. */
const CONFIG_REGION = 7;
const PCI_COMMAND = 4;
const PCI_COMMAND_MEMORY = 0x2;
const PCI_COMMAND_MASTER = 0x4;
const VFIO_DEVICE_FEATURE_GET = 1 << 16;
const VFIO_DEVICE_FEATURE_DMA_BUF = 11;
const O_RDWR = 2;
/** What one RegionWrite or CpuRead carries at most: a 4 MiB gRPC message limit holds it. */
const CPU_IO_BYTES = 1 << 20;
const HOST_A_IOVA = 0x10_0000;
/** timeout 14 is 67 ms, retry_cnt 7: a host that went away is declared in about half a second. */
const RC_TIMEOUT = { timeout: 14, retryCnt: 7 };

export interface CrossHostReadOptions {
  /** The reader: its registry (its memory) and its NIC. */
  readonly hostA: { readonly registry: string; readonly nic: string };
  /** The host whose accel0 is read: its registry, vfio-pci, NIC and administrator's token. */
  readonly hostB: { readonly registry: string; readonly vfioPci: string; readonly nic: string; readonly adminToken: string };
  /** TLS to every service; default P2P_TLS_* (plaintext when unset). */
  readonly tls?: TlsConfig;
  /** Bytes to read; default 1 MiB. */
  readonly length?: number;
}

export interface CrossHostReadResult {
  /** What landed in host A's memory. */
  readonly received: Buffer;
  /** What accel0 held. */
  readonly expected: Buffer;
}

/** Runs the example; resolves to the bytes host A received and what host B's accel0 held. */
export async function crossHostRead(options: CrossHostReadOptions): Promise<CrossHostReadResult> {
  const length = options.length ?? 1 << 20;
  const tls = options.tls ?? loadTlsConfig();
  // A segment directory of this process's own: it shares no tmpfs with either
  // host, so its CPU reaches host A's memory through host A's registry.
  const ownDir = fs.mkdtempSync(path.join(os.tmpdir(), 'cross-host-read-'));
  const closers: Array<() => unknown> = [() => fs.rmSync(ownDir, { recursive: true, force: true })];
  try {
    const appB = await RegistrySession.open(options.hostB.registry, { name: 'cross-host-read-b', shmDir: ownDir, tls });
    closers.unshift(() => appB.close());
    const appA = await RegistrySession.open(options.hostA.registry, { name: 'cross-host-read-a', shmDir: ownDir, tls });
    closers.unshift(() => appA.close());

    // Host B: its administrator binds accel0 to vfio-pci (EBUSY: bound already)...
    const admin = connectPeer(vfio.VfioPciServiceDefinition, options.hostB.vfioPci, { name: 'vfio-pci', tls, token: options.hostB.adminToken });
    closers.unshift(() => admin.close());
    await admin.client.bind({ bdf: ACCEL0, variants: undefined }).catch((error: unknown) => {
      if (errnoOf(error) !== 'EBUSY') throw error;
    });
    // ...the application opens it, exports BAR2's first `length` bytes as a dma-buf...
    const vfioPci = connectPeer(vfio.VfioPciServiceDefinition, options.hostB.vfioPci, { name: 'vfio-pci', tls, token: appB.credential });
    closers.unshift(() => vfioPci.close());
    const { fd: deviceFd } = await vfioPci.client.openDevice({ pid: appB.pid, bdf: ACCEL0 });
    const { fd: barFd } = await vfioPci.client.deviceFeature({
      pid: appB.pid,
      deviceFd,
      argsz: 0,
      flags: VFIO_DEVICE_FEATURE_GET | VFIO_DEVICE_FEATURE_DMA_BUF,
      payload: { $case: 'dmaBuf', value: { regionIndex: BAR2, openFlags: O_RDWR, flags: 0, dmaRanges: [{ offset: 0n, length: BigInt(length) }] } },
    });
    // ...enables memory decode and bus mastering (pci_enable_device() + pci_set_master())...
    const command = Buffer.alloc(2);
    command.writeUInt16LE(PCI_COMMAND_MEMORY | PCI_COMMAND_MASTER);
    await vfioPci.client.regionWrite({ pid: appB.pid, deviceFd, index: CONFIG_REGION, offset: BigInt(PCI_COMMAND), data: command });
    // ...and the device holds something (its own work; here writes through the BAR region).
    const expected = Buffer.alloc(length);
    for (let i = 0; i + 4 <= length; i += 4) expected.writeUInt32LE((i * 2654435761) >>> 0, i);
    for (let offset = 0; offset < length; offset += CPU_IO_BYTES) {
      const data = expected.subarray(offset, Math.min(length, offset + CPU_IO_BYTES));
      await vfioPci.client.regionWrite({ pid: appB.pid, deviceFd, index: BAR2, offset: BigInt(offset), data });
    }
    // ...registered on host B's NIC with ibv_reg_dmabuf_mr(), remote read allowed.
    const nicB = await VerbsContext.open(options.hostB.nic, appB, tls);
    closers.unshift(() => nicB.close());
    const pdB = await nicB.allocPd();
    const barMr = await nicB.regDmabufMr(pdB, { fd: barFd, offset: 0, length, iova: 0, access: IBV_ACCESS_REMOTE_READ });

    // Host A: a buffer of its memory (a system-heap dma-buf) registered on its NIC.
    const nicA = await VerbsContext.open(options.hostA.nic, appA, tls);
    closers.unshift(() => nicA.close());
    const pdA = await nicA.allocPd();
    const { fd: heapFd } = await appA.heapAllocate(length);
    const hostMr = await nicA.regMr(pdA, { heapFd, length, iova: HOST_A_IOVA, access: IBV_ACCESS_LOCAL_WRITE });

    // One RC QP on each NIC, connected by GID and QPN: what the two sides would swap over TCP.
    const rcQp = async (ctx: VerbsContext, pd: number): Promise<{ cq: number; qpNum: number; gid: Uint8Array }> => {
      const { cqHandle } = await ctx.createCq(16);
      const cap = { maxSendWr: 16, maxRecvWr: 16, maxSendSge: 1, maxRecvSge: 1 };
      const { qpNum } = await ctx.createQp({ pdHandle: pd, sendCqHandle: cqHandle, recvCqHandle: cqHandle, cap });
      return { cq: cqHandle, qpNum, gid: (await ctx.queryPort()).gid };
    };
    const qpA = await rcQp(nicA, pdA);
    const qpB = await rcQp(nicB, pdB);
    await nicB.connectRc(qpB.qpNum, { gid: qpA.gid, qpNum: qpA.qpNum }, { ...RC_TIMEOUT, access: IBV_ACCESS_REMOTE_READ });
    await nicA.connectRc(qpA.qpNum, { gid: qpB.gid, qpNum: qpB.qpNum }, { ...RC_TIMEOUT, access: 0 });

    // The READ: host B's accel0 (remote, through host B's NIC) into host A's buffer (local, through host A's NIC).
    await nicA.postSend(qpA.qpNum, [
      {
        wrId: 1n,
        opcode: rdma.WrOpcode.WR_OPCODE_RDMA_READ,
        sgList: [{ addr: BigInt(HOST_A_IOVA), length, lkey: hostMr.lkey }],
        sendFlags: IBV_SEND_SIGNALED,
        immData: 0,
        remoteAddr: 0n,
        rkey: barMr.rkey,
        compareAdd: 0n,
        swap: 0n,
      },
    ]);
    let completions: rdma.WorkCompletion[] = [];
    while (completions.length === 0) completions = await nicA.pollCq(qpA.cq, 1);
    const status = completions[0]!.status;
    if (status !== rdma.WcStatus.WC_STATUS_SUCCESS) throw new Error(`the RDMA READ completed with ${rdma.WcStatus[status] ?? `status ${status}`}`);

    const received = Buffer.alloc(length);
    for (let offset = 0; offset < length; offset += CPU_IO_BYTES) {
      const size = Math.min(CPU_IO_BYTES, length - offset);
      received.set(await appA.cpuRead(heapFd, offset, size), offset);
    }
    return { received, expected };
  } finally {
    for (const close of closers) await Promise.resolve(close()).catch(() => undefined);
  }
}

/** The options from the environment (see the header); names the first variable missing. */
export function crossHostReadOptionsFromEnv(env: NodeJS.ProcessEnv = process.env): CrossHostReadOptions {
  const required = (name: string): string => {
    const value = env[name];
    if (value === undefined || value === '') throw new Error(`${name} is not set: see the header of tests/src/examples/cross-host-read.ts`);
    return value;
  };
  const hostA = { registry: required('HOST_A_REGISTRY_ADDRESS'), nic: required('HOST_A_NIC_ADDRESS') };
  const hostB = { registry: required('HOST_B_REGISTRY_ADDRESS'), vfioPci: required('HOST_B_VFIO_PCI_ADDRESS'), nic: required('HOST_B_NIC_ADDRESS') };
  const hostBShm = env.HOST_B_SHM_DIR;
  if (!env.HOST_B_ADMIN_TOKEN && !env.P2P_ADMIN_TOKEN && !hostBShm) {
    throw new Error("host B's administrator's token: set HOST_B_ADMIN_TOKEN (or P2P_ADMIN_TOKEN, or HOST_B_SHM_DIR to read its .admin-token)");
  }
  const adminToken = env.HOST_B_ADMIN_TOKEN || readAdminToken(hostBShm ?? '', env);
  return {
    hostA,
    hostB: { ...hostB, adminToken },
    length: env.READ_BYTES ? Number(env.READ_BYTES) : undefined,
  };
}

if (require.main === module) {
  const a = process.env.HOST_A_NAME || 'host-a';
  const b = process.env.HOST_B_NAME || 'host-b';
  exampleMain(
    Promise.resolve().then(() => crossHostRead(crossHostReadOptionsFromEnv())),
    ({ received, expected }) => {
      const same = received.equals(expected);
      return {
        ok: same,
        line: `read ${received.length} bytes of ${b}'s accel0 BAR into ${a}'s memory over the wire: ${same ? 'identical' : 'DIFFERENT'}`,
      };
    },
  );
}
