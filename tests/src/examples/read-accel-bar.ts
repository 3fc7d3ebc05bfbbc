/**
 * The README's example: accel0's memory, exported by vfio-pci as a dma-buf
 * and registered on host X's NIC (nic1, P2P with accel0), read with one
 * RDMA READ by host Y (nic0) straight into host Y's memory. No CPU touches
 * the bytes in between: nic1 reads the BAR, nic0 writes host Y's buffer.
 *
 *   npm start                                   # in another terminal
 *   node tests/dist/examples/read-accel-bar.js
 *
 * Addresses: DMABUF_REGISTRY_ADDRESS, VFIO_PCI_ADDRESS, RDMA_NIC_A_ADDRESS
 * (host Y's NIC) and RDMA_NIC_B_ADDRESS (host X's NIC); the defaults are
 * npm start's. P2P_SHM_DIR must name the segment directory the services use.
 *
 * Each process proves itself with its session's credential (`session.credential`,
 * sent as `authorization: Bearer` by every client @p2p/rpc's connectPeer makes). Binding accel0 to
 * vfio-pci is the administrator's, as writing sysfs is root's: the example
 * reads the administrator's token from P2P_ADMIN_TOKEN or, as npm start
 * leaves it, from `.admin-token` in the segment directory. With P2P_TLS_CA
 * (and P2P_TLS_CERT/P2P_TLS_KEY for mutual TLS) set, every call goes over TLS.
 */
import { loadTlsConfig, readAdminToken, type TlsConfig } from '@p2p/auth';
import { RegistrySession } from '@p2p/dmabuf-client';
import { rdma, vfio } from '@p2p/proto';
import { connectPeer } from '@p2p/rpc';
import { resolveShmDir } from '@p2p/shm';
import { errnoOf } from '@p2p/status';
import { IBV_ACCESS_LOCAL_WRITE, IBV_ACCESS_REMOTE_READ, IBV_SEND_SIGNALED, VerbsContext } from '@p2p/verbs';

export interface ReadAccelBarOptions {
  readonly registry: string;
  readonly vfioPci: string;
  readonly nicY: string;
  readonly nicX: string;
  readonly shmDir?: string;
  /** The administrator's token; default P2P_ADMIN_TOKEN, else the platform's `.admin-token` in shmDir. */
  readonly adminToken?: string;
  /** TLS to every service; default P2P_TLS_* (plaintext when unset). */
  readonly tls?: TlsConfig;
  readonly length?: number;
}

/** Runs the example; resolves to the bytes host Y received and what accel0 held. */
export async function readAccelBar(options: ReadAccelBarOptions): Promise<{ received: Buffer; expected: Buffer }> {
  const length = options.length ?? 1 << 20;
  const tls = options.tls ?? loadTlsConfig();
  const hostX = await RegistrySession.open(options.registry, { name: 'host-x-app', shmDir: options.shmDir, tls });
  const hostY = await RegistrySession.open(options.registry, { name: 'host-y-app', shmDir: options.shmDir, tls });
  const vfioPci = connectPeer(vfio.VfioPciServiceDefinition, options.vfioPci, { name: 'vfio-pci', tls, token: hostX.credential });
  const admin = connectPeer(vfio.VfioPciServiceDefinition, options.vfioPci, {
    name: 'vfio-pci',
    tls,
    token: options.adminToken ?? readAdminToken(options.shmDir ?? resolveShmDir()),
  });
  try {
    // The administrator binds accel0 to vfio-pci (EBUSY: it is bound already)...
    await admin.client.bind({ bdf: '0000:07:00.0', variants: undefined }).catch((error: unknown) => {
      if (errnoOf(error) !== 'EBUSY') throw error;
    });
    // ...host X opens it and exports BAR2's first `length` bytes as a dma-buf...
    const { fd: deviceFd } = await vfioPci.client.openDevice({ pid: hostX.pid, bdf: '0000:07:00.0' });
    const { fd: barFd } = await vfioPci.client.deviceFeature({
      pid: hostX.pid,
      deviceFd,
      argsz: 0,
      flags: (1 << 16) | 11, // VFIO_DEVICE_FEATURE_GET | VFIO_DEVICE_FEATURE_DMA_BUF
      payload: { $case: 'dmaBuf', value: { regionIndex: 2, openFlags: 2, flags: 0, dmaRanges: [{ offset: 0n, length: BigInt(length) }] } },
    });
    // The driver enables memory decode and bus mastering (pci_enable_device + pci_set_master)...
    const command = Buffer.alloc(2);
    command.writeUInt16LE(0x6); // PCI_COMMAND_MEMORY | PCI_COMMAND_MASTER
    await vfioPci.client.regionWrite({ pid: hostX.pid, deviceFd, index: 7, offset: 4n, data: command });
    // ...and the device holds something (its own work; here a write through the BAR region).
    const expected = Buffer.alloc(length);
    for (let i = 0; i < length; i += 4) expected.writeUInt32LE((i * 2654435761) >>> 0, i);
    await vfioPci.client.regionWrite({ pid: hostX.pid, deviceFd, index: 2, offset: 0n, data: expected });

    // ...registered on nic1 with ibv_reg_dmabuf_mr(), remote read allowed.
    const x = await VerbsContext.open(options.nicX, hostX, tls);
    const xPd = await x.allocPd();
    const barMr = await x.regDmabufMr(xPd, { fd: barFd, offset: 0, length, iova: 0, access: IBV_ACCESS_REMOTE_READ });

    // Host Y: its memory (a system-heap dma-buf) registered on nic0.
    const y = await VerbsContext.open(options.nicY, hostY, tls);
    const yPd = await y.allocPd();
    const { fd: heapFd } = await hostY.heapAllocate(length);
    const yMr = await y.regMr(yPd, { heapFd, length, iova: 0x10_0000, access: IBV_ACCESS_LOCAL_WRITE });

    // One RC QP each, connected by GID and QPN (exchanged out of band).
    const qp = async (ctx: VerbsContext, pd: number): Promise<{ cq: number; qpNum: number; gid: Uint8Array }> => {
      const { cqHandle } = await ctx.createCq(16);
      const cap = { maxSendWr: 16, maxRecvWr: 16, maxSendSge: 1, maxRecvSge: 1 };
      const { qpNum } = await ctx.createQp({ pdHandle: pd, sendCqHandle: cqHandle, recvCqHandle: cqHandle, cap });
      return { cq: cqHandle, qpNum, gid: (await ctx.queryPort()).gid };
    };
    const qx = await qp(x, xPd);
    const qy = await qp(y, yPd);
    await x.connectRc(qx.qpNum, { gid: qy.gid, qpNum: qy.qpNum }, { access: IBV_ACCESS_REMOTE_READ });
    await y.connectRc(qy.qpNum, { gid: qx.gid, qpNum: qx.qpNum }, { access: 0 });

    // The RDMA READ: accel0's bytes (remote, through nic1) into host Y's buffer (local, through nic0).
    await y.postSend(qy.qpNum, [
      {
        wrId: 1n,
        opcode: rdma.WrOpcode.WR_OPCODE_RDMA_READ,
        sgList: [{ addr: 0x10_0000n, length, lkey: yMr.lkey }],
        sendFlags: IBV_SEND_SIGNALED,
        immData: 0,
        remoteAddr: 0n,
        rkey: barMr.rkey,
        compareAdd: 0n,
        swap: 0n,
      },
    ]);
    let completions: rdma.WorkCompletion[] = [];
    while (completions.length === 0) completions = await y.pollCq(qy.cq, 1);
    if (completions[0]!.status !== rdma.WcStatus.WC_STATUS_SUCCESS) throw new Error(`the READ completed with status ${completions[0]!.status}`);

    const received = await hostY.cpuRead(heapFd, 0, length);
    x.close();
    y.close();
    return { received, expected };
  } finally {
    vfioPci.close();
    admin.close();
    await hostX.close();
    await hostY.close();
  }
}

if (require.main === module) {
  readAccelBar({
    registry: process.env.DMABUF_REGISTRY_ADDRESS ?? '127.0.0.1:50053',
    vfioPci: process.env.VFIO_PCI_ADDRESS ?? '127.0.0.1:50052',
    nicY: process.env.RDMA_NIC_A_ADDRESS ?? '127.0.0.1:50054',
    nicX: process.env.RDMA_NIC_B_ADDRESS ?? '127.0.0.1:50055',
  }).then(
    ({ received, expected }) => {
      console.log(received.equals(expected) ? `host Y read ${received.length} bytes of accel0's BAR: identical` : 'host Y read different bytes');
      process.exit(received.equals(expected) ? 0 : 1);
    },
    (error: unknown) => {
      console.error(error);
      process.exit(1);
    },
  );
}
