import * as fs from 'node:fs';
import { type ClientReadableStream, credentials, type ServiceError } from '@grpc/grpc-js';
import { expect } from 'chai';
import { O_RDONLY, RegistrySession } from '@p2p/dmabuf-client';
import { startDmabufRegistry } from '@p2p/dmabuf-registry';
import { ErrnoError } from '@p2p/errno';
import { startPciEmu } from '@p2p/pci-emu';
import { dmabuf, rdma, vfio } from '@p2p/proto';
import {
  IBV_ACCESS_LOCAL_WRITE,
  IBV_ACCESS_REMOTE_ATOMIC,
  IBV_ACCESS_REMOTE_READ,
  IBV_ACCESS_REMOTE_WRITE,
  IBV_QP_ACCESS_FLAGS,
  IBV_QP_AV,
  IBV_QP_DEST_QPN,
  IBV_QP_MAX_DEST_RD_ATOMIC,
  IBV_QP_MAX_QP_RD_ATOMIC,
  IBV_QP_MIN_RNR_TIMER,
  IBV_QP_PATH_MTU,
  IBV_QP_PKEY_INDEX,
  IBV_QP_PORT,
  IBV_QP_RETRY_CNT,
  IBV_QP_RNR_RETRY,
  IBV_QP_RQ_PSN,
  IBV_QP_SQ_PSN,
  IBV_QP_STATE,
  IBV_QP_TIMEOUT,
  IBV_SEND_SIGNALED,
  InMemoryFabric,
  startRdmaNic,
} from '@p2p/rdma-nic';
import type { RunningServer } from '@p2p/server';
import { errnoOf } from '@p2p/status';
import { asAdmin, eventually, platformSecretsOf, rejection, tempShmDir } from '@p2p/testing';
import { startVfioPci } from '@p2p/vfio-pci';
import { CQE_BYTES, decodeCqes } from '@p2p/verbs';
import { expectErrno, rpc } from '../harness/rpc';

const NIC0 = '0000:04:00.0';
const NIC1 = '0000:09:00.0';
const NVME0 = '0000:03:00.0';
const ACCEL0 = '0000:07:00.0';
const KiB = 1024;
const SIZE = 64 * KiB;
const ALL_ACCESS = IBV_ACCESS_LOCAL_WRITE | IBV_ACCESS_REMOTE_WRITE | IBV_ACCESS_REMOTE_READ | IBV_ACCESS_REMOTE_ATOMIC;
const BAR2 = 2;
const CONFIG_REGION = 7;
const PCI_COMMAND = 0x04;
const PCI_COMMAND_MEMORY = 0x2;
const FEATURE_DMA_BUF = 11;
const VFIO_DEVICE_FEATURE_GET = 1 << 16;
const O_RDWR = 2;
const WQE_BYTES = 64;

const { WrOpcode, WcStatus, WcOpcode, QpState, AsyncEventType } = rdma;

/** A send WR with every field the wire message needs, defaults for the rest. */
function sendWr(wr: Partial<rdma.SendWr>): rdma.SendWr {
  return rdma.SendWr.fromPartial({ sendFlags: IBV_SEND_SIGNALED, ...wr });
}

/** One packed WQE (rdma.proto, PostStreamRequest.wqes), as a provider library writes it. */
function packWqe(wr: { wrId: bigint; opcode: number; addr: number; length: number; lkey: number; remoteAddr: number; rkey: number; numSge?: number }): Buffer {
  const b = Buffer.alloc(WQE_BYTES);
  b.writeBigUInt64LE(wr.wrId, 0);
  b.writeUInt8(wr.opcode, 8);
  b.writeUInt8(wr.numSge ?? 1, 9);
  b.writeUInt16LE(IBV_SEND_SIGNALED, 10);
  b.writeBigUInt64LE(BigInt(wr.remoteAddr), 16);
  b.writeUInt32LE(wr.rkey, 24);
  b.writeUInt32LE(wr.lkey, 28);
  b.writeBigUInt64LE(BigInt(wr.addr), 32);
  b.writeUInt32LE(wr.length, 40);
  return b;
}

/** Collects a server stream's messages from the moment it is subscribed (its headers). */
class StreamLog<T> {
  readonly messages: T[] = [];
  ended = false;
  error: ServiceError | undefined;

  private constructor(readonly stream: ClientReadableStream<T>) {
    stream.on('data', (message: T) => this.messages.push(message));
    stream.on('error', (error: ServiceError) => {
      this.error = error;
      this.ended = true;
    });
    stream.on('end', () => (this.ended = true));
  }

  static async open<T>(stream: ClientReadableStream<T>): Promise<StreamLog<T>> {
    const log = new StreamLog(stream);
    await new Promise<void>((resolve, reject) => {
      stream.once('metadata', () => resolve());
      stream.once('error', reject);
    });
    return log;
  }

  close(): void {
    this.stream.cancel();
  }
}

/** A process on one host: its registry session (pid, fd table, heap buffers) and a verbs context on its NIC. */
class Host {
  private constructor(
    readonly session: RegistrySession,
    readonly client: rdma.RdmaNicServiceClient,
    readonly fd: number,
    readonly gid: Buffer,
  ) {}

  static async open(name: string, registry: string, nic: RunningServer, shmDir: string): Promise<Host> {
    const session = await RegistrySession.open(registry, { name, shmDir });
    const client = new rdma.RdmaNicServiceClient(`127.0.0.1:${nic.port}`, credentials.createInsecure(), { interceptors: [session.interceptor] });
    const { fd } = await rpc<rdma.OpenDeviceResponse>((cb) => client.openDevice({ pid: session.pid }, cb));
    const { gid } = await rpc<rdma.QueryPortResponse>((cb) => client.queryPort({ pid: session.pid, contextFd: fd, portNum: 1 }, cb));
    return new Host(session, client, fd, gid);
  }

  /** What every call carries: the process and its context fd. */
  get ctx(): { pid: number; contextFd: number } {
    return { pid: this.session.pid, contextFd: this.fd };
  }

  async allocPd(): Promise<number> {
    return (await rpc<rdma.AllocPdResponse>((cb) => this.client.allocPd(this.ctx, cb))).pdHandle;
  }

  /** A system-heap buffer of this process, registered at `iova`. */
  async heapMr(pd: number, iova: number, access = ALL_ACCESS, size = SIZE): Promise<{ heapFd: number; mr: rdma.RegMrResponse }> {
    const { fd: heapFd } = await this.session.heapAllocate(size);
    const mr = await rpc<rdma.RegMrResponse>((cb) =>
      this.client.regMr({ ...this.ctx, pdHandle: pd, heapFd, offset: 0n, length: BigInt(size), iova: BigInt(iova), access }, cb),
    );
    return { heapFd, mr };
  }

  async cq(cqe = 255): Promise<number> {
    return (await rpc<rdma.CreateCqResponse>((cb) => this.client.createCq({ ...this.ctx, cqe }, cb))).cqHandle;
  }

  async qp(pd: number, cq: number): Promise<number> {
    const created = await rpc<rdma.CreateQpResponse>((cb) =>
      this.client.createQp(
        { ...this.ctx, pdHandle: pd, sendCqHandle: cq, recvCqHandle: cq, cap: { maxSendWr: 64, maxRecvWr: 64, maxSendSge: 2, maxRecvSge: 2, maxInlineData: 0 }, sqSigAll: false },
        cb,
      ),
    );
    return created.qpNum;
  }

  modifyQp(qpNum: number, attr: Partial<rdma.QpAttr>, attrMask: number): Promise<rdma.ModifyQpResponse> {
    return rpc((cb) => this.client.modifyQp({ ...this.ctx, qpNum, attr: rdma.QpAttr.fromPartial(attr), attrMask }, cb));
  }

  /** RESET (from wherever it is), INIT, RTR towards the peer's GID and QPN, RTS. */
  async connect(qpNum: number, peer: { gid: Buffer; qpNum: number }): Promise<void> {
    await this.modifyQp(qpNum, { qpState: QpState.QP_STATE_RESET }, IBV_QP_STATE);
    await this.modifyQp(qpNum, { qpState: QpState.QP_STATE_INIT, pkeyIndex: 0, portNum: 1, qpAccessFlags: ALL_ACCESS }, IBV_QP_STATE | IBV_QP_PKEY_INDEX | IBV_QP_PORT | IBV_QP_ACCESS_FLAGS);
    await this.modifyQp(
      qpNum,
      { qpState: QpState.QP_STATE_RTR, dgid: peer.gid, pathMtu: 5, destQpNum: peer.qpNum, rqPsn: 0, maxDestRdAtomic: 16, minRnrTimer: 1 },
      IBV_QP_STATE | IBV_QP_AV | IBV_QP_PATH_MTU | IBV_QP_DEST_QPN | IBV_QP_RQ_PSN | IBV_QP_MAX_DEST_RD_ATOMIC | IBV_QP_MIN_RNR_TIMER,
    );
    await this.modifyQp(
      qpNum,
      { qpState: QpState.QP_STATE_RTS, timeout: 14, retryCnt: 7, rnrRetry: 7, sqPsn: 0, maxRdAtomic: 16 },
      IBV_QP_STATE | IBV_QP_TIMEOUT | IBV_QP_RETRY_CNT | IBV_QP_RNR_RETRY | IBV_QP_SQ_PSN | IBV_QP_MAX_QP_RD_ATOMIC,
    );
  }

  postSend(qpNum: number, wrs: rdma.SendWr[]): Promise<rdma.PostSendResponse> {
    return rpc((cb) => this.client.postSend({ ...this.ctx, qpNum, wrs }, cb));
  }

  postRecv(qpNum: number, wrs: rdma.RecvWr[]): Promise<rdma.PostRecvResponse> {
    return rpc((cb) => this.client.postRecv({ ...this.ctx, qpNum, wrs }, cb));
  }

  /** Polls `cq` until `count` completions came. */
  async completions(cq: number, count: number): Promise<rdma.WorkCompletion[]> {
    const got: rdma.WorkCompletion[] = [];
    await eventually(`${count} completions on CQ ${cq}`, async () => {
      got.push(...(await rpc<rdma.PollCqResponse>((cb) => this.client.pollCq({ ...this.ctx, cqHandle: cq, maxEntries: 16 }, cb))).completions);
      return got.length >= count;
    });
    return got;
  }

  async queryQp(qpNum: number): Promise<rdma.QpAttr> {
    return (await rpc<rdma.QueryQpResponse>((cb) => this.client.queryQp({ ...this.ctx, qpNum }, cb))).attr!;
  }

  async close(): Promise<void> {
    this.client.close();
    await this.session.close();
  }
}

/** Two hosts, each with a PD, a heap MR, a CQ and an RC QP connected to the other's. */
interface Pair {
  readonly a: Side;
  readonly b: Side;
}

interface Side {
  readonly host: Host;
  readonly pd: number;
  readonly cq: number;
  readonly qpNum: number;
  readonly heapFd: number;
  readonly key: number;
  readonly iova: number;
}

describe('rdma-nic over gRPC: two NICs on one in-memory fabric, with pci-emu, the registry and vfio-pci, in one process', function () {
  this.timeout(20_000);
  let shmDir: string;
  let servers: RunningServer[] = [];
  let registryAddress: string;
  let registryServer: RunningServer;
  let vfioClient: vfio.VfioPciServiceClient;
  /** An administrator's process, reading /sys/kernel/debug/dma_buf/bufinfo. */
  let debugfs: RegistrySession;
  let base: NodeJS.ProcessEnv;
  let nic0: RunningServer;
  let nic1: RunningServer;
  const hosts: Host[] = [];

  const nicEnv = (bdf: string, ip: string): NodeJS.ProcessEnv => ({
    ...base,
    RDMA_NIC_HOST: '127.0.0.1',
    RDMA_NIC_PORT: '0',
    RDMA_NIC_METRICS_PORT: '-1',
    RDMA_NIC_BDF: bdf,
    RDMA_NIC_GID_ADDRESS: ip,
    RDMA_NIC_CONNECT_TIMEOUT_MS: '0',
  });

  before(async () => {
    shmDir = tempShmDir();
    const quiet = { P2P_SHM_DIR: shmDir, LOG_LEVEL: 'warn' };
    const pciEmu = await startPciEmu({ ...quiet, PCI_EMU_HOST: '127.0.0.1', PCI_EMU_PORT: '0', PCI_EMU_METRICS_PORT: '-1' });
    servers.push(pciEmu);
    const pciAddress = `127.0.0.1:${pciEmu.port}`;
    const registry = await startDmabufRegistry({ ...quiet, PCI_EMU_ADDRESS: pciAddress, DMABUF_REGISTRY_HOST: '127.0.0.1', DMABUF_REGISTRY_PORT: '0', DMABUF_REGISTRY_METRICS_PORT: '-1' });
    servers.push(registry);
    registryServer = registry;
    registryAddress = `127.0.0.1:${registry.port}`;
    base = { ...quiet, PCI_EMU_ADDRESS: pciAddress, DMABUF_REGISTRY_ADDRESS: registryAddress };
    const vfioPci = await startVfioPci({ ...base, VFIO_PCI_HOST: '127.0.0.1', VFIO_PCI_PORT: '0', VFIO_PCI_METRICS_PORT: '-1' });
    servers.push(vfioPci);
    const admin = asAdmin(shmDir);
    vfioClient = new vfio.VfioPciServiceClient(`127.0.0.1:${vfioPci.port}`, admin.credentials, admin.options);
    debugfs = await RegistrySession.open(registryAddress, { name: 'bufinfo-reader', shmDir, privilegedCredential: platformSecretsOf(shmDir).adminToken });
    const fabric = new InMemoryFabric();
    nic0 = await startRdmaNic(nicEnv(NIC0, '127.0.0.2'), { fabric });
    servers.push(nic0);
    nic1 = await startRdmaNic(nicEnv(NIC1, '127.0.0.3'), { fabric });
    servers.push(nic1);
  });

  after(async () => {
    await Promise.all(hosts.map((host) => host.close().catch(() => undefined)));
    vfioClient?.close();
    await debugfs?.close().catch(() => undefined);
    for (const server of servers.reverse()) await server.shutdown('test over');
    servers = [];
    fs.rmSync(shmDir, { recursive: true, force: true });
  });

  async function host(name: string, nic: RunningServer): Promise<Host> {
    const opened = await Host.open(name, registryAddress, nic, shmDir);
    hosts.push(opened);
    return opened;
  }

  async function side(h: Host, iova: number): Promise<Side> {
    const pd = await h.allocPd();
    const { heapFd, mr } = await h.heapMr(pd, iova);
    const cq = await h.cq();
    return { host: h, pd, cq, qpNum: await h.qp(pd, cq), heapFd, key: mr.lkey, iova };
  }

  /** A host on each NIC, connected. */
  async function pair(): Promise<Pair> {
    const a = await side(await host('host-a', nic0), 0x10000);
    const b = await side(await host('host-b', nic1), 0x20000);
    await a.host.connect(a.qpNum, { gid: b.host.gid, qpNum: b.qpNum });
    await b.host.connect(b.qpNum, { gid: a.host.gid, qpNum: a.qpNum });
    return { a, b };
  }

  it('opens a verbs context as a file of the NIC in the process, and describes the device and its port', async () => {
    const h = await host('describe', nic0);
    const file = await h.session.resolveFd(h.fd);
    expect(file.kind).to.equal(dmabuf.FileKind.FILE_KIND_OWNED);
    expect(file.owner).to.equal(`rdma-nic/${NIC0}`);

    const device = await rpc<rdma.QueryDeviceResponse>((cb) => h.client.queryDevice(h.ctx, cb));
    expect(device).to.include({ bdf: NIC0, name: 'rocep4s0f0', vendorId: 0x15b3, vendorPartId: 0x101b, maxQpRdAtom: 16, physPortCnt: 1, atomicCap: 1, fwVer: '0.1.0' });
    expect(device.maxQp).to.be.greaterThan(0);
    expect(device.maxMrSize > 0n).to.equal(true);

    const port = await rpc<rdma.QueryPortResponse>((cb) => h.client.queryPort({ ...h.ctx, portNum: 1 }, cb));
    expect(port).to.include({ state: rdma.PortState.PORT_STATE_ACTIVE, activeMtu: 5, maxMtu: 5, maxMsgSz: 1 << 30, linkLayer: 2, gidTblLen: 1 });
    expect([...port.gid]).to.deep.equal([0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff, 127, 0, 0, 2]);
    await expectErrno(rpc((cb) => h.client.queryPort({ ...h.ctx, portNum: 2 }, cb)), 'EINVAL');

    const other = await host('describe-nic1', nic1);
    expect((await rpc<rdma.QueryDeviceResponse>((cb) => other.client.queryDevice(other.ctx, cb))).name).to.equal('rocep9s0f0');
  });

  it('refuses what ibv would: a fd that is no context of this NIC, other contexts\' objects, a busy PD, bad access', async () => {
    const h = await host('errno', nic0);
    const other = await host('errno-other', nic0);
    const pd = await h.allocPd();
    const { heapFd } = await h.heapMr(pd, 0x1000);

    // A heap buffer's fd, an fd never opened, and a context of the other NIC are no context here.
    await expectErrno(rpc((cb) => h.client.allocPd({ pid: h.session.pid, contextFd: heapFd }, cb)), 'EBADF');
    await expectErrno(rpc((cb) => h.client.allocPd({ pid: h.session.pid, contextFd: 999 }, cb)), 'EBADF');
    const atNic1 = await host('errno-nic1', nic1);
    const nic1ProcessAtNic0 = new rdma.RdmaNicServiceClient(`127.0.0.1:${nic0.port}`, credentials.createInsecure(), { interceptors: [atNic1.session.interceptor] });
    await expectErrno(rpc((cb) => nic1ProcessAtNic0.allocPd(atNic1.ctx, cb)), 'EBADF');
    nic1ProcessAtNic0.close();
    // Naming another process is EPERM, whatever it holds.
    await expectErrno(rpc((cb) => h.client.allocPd(other.ctx, cb)), 'EPERM');

    // Handles are per context: the other context's PD does not exist for it.
    await expectErrno(rpc((cb) => other.client.deallocPd({ ...other.ctx, pdHandle: pd }, cb)), 'EINVAL');
    await expectErrno(rpc((cb) => h.client.deallocPd({ ...h.ctx, pdHandle: 0xdead }, cb)), 'EINVAL');
    await expectErrno(rpc((cb) => h.client.deallocPd({ ...h.ctx, pdHandle: pd }, cb)), 'EBUSY');
    await expectErrno(rpc((cb) => h.client.createCq({ ...h.ctx, cqe: 0 }, cb)), 'EINVAL');

    // reg_dmabuf_mr: REMOTE_WRITE without LOCAL_WRITE; a bad fd; reg_mr of no buffer.
    const dmabufMr = (fd: number, access: number): Promise<unknown> =>
      rpc((cb) => h.client.regDmabufMr({ ...h.ctx, pdHandle: pd, offset: 0n, length: 4096n, iova: 0n, fd, access }, cb));
    await expectErrno(dmabufMr(heapFd, IBV_ACCESS_REMOTE_WRITE), 'EINVAL');
    await expectErrno(dmabufMr(777, IBV_ACCESS_LOCAL_WRITE), 'EBADF');
    await expectErrno(rpc((cb) => h.client.regMr({ ...h.ctx, pdHandle: pd, heapFd: 777, offset: 0n, length: 4096n, iova: 0n, access: 0 }, cb)), 'EBADF');
    await expectErrno(rpc((cb) => h.client.regMr({ ...h.ctx, pdHandle: pd, heapFd, offset: BigInt(SIZE - 8), length: 4096n, iova: 0n, access: 0 }, cb)), 'EFAULT');
    // Nothing the failed registrations attached stays attached: the one MR's attachment is all.
    const heapId = (await h.session.resolveFd(heapFd)).fileId;
    expect((await debugfs.bufInfo()).find((b) => b.bufferId === heapId)?.attachments).to.have.length(1);

    // A buffer the process opened read-only can be read by the NIC, not written (ib_umem_get()'s FOLL_WRITE).
    const { fd: readOnly } = await h.session.heapAllocate(SIZE, O_RDONLY);
    const regReadOnly = (access: number): Promise<rdma.RegMrResponse> =>
      rpc((cb) => h.client.regMr({ ...h.ctx, pdHandle: pd, heapFd: readOnly, offset: 0n, length: 4096n, iova: 0n, access }, cb));
    await expectErrno(regReadOnly(IBV_ACCESS_LOCAL_WRITE), 'EFAULT');
    expect((await regReadOnly(IBV_ACCESS_REMOTE_READ)).lkey).to.be.a('number');
  });

  it('moves bytes between two hosts\' heap buffers with RDMA WRITE and READ', async () => {
    const { a, b } = await pair();
    await a.host.session.cpuWrite(a.heapFd, 0, Buffer.from('written by host a'));
    await a.host.postSend(a.qpNum, [sendWr({ wrId: 1n, opcode: WrOpcode.WR_OPCODE_RDMA_WRITE, sgList: [{ addr: BigInt(a.iova), length: 17, lkey: a.key }], remoteAddr: BigInt(b.iova + 100), rkey: b.key })]);
    const [write] = await a.host.completions(a.cq, 1);
    expect(write).to.include({ wrId: 1n, status: WcStatus.WC_STATUS_SUCCESS, opcode: WcOpcode.WC_OPCODE_RDMA_WRITE, qpNum: a.qpNum });
    expect((await b.host.session.cpuRead(b.heapFd, 100, 17)).toString()).to.equal('written by host a');

    await b.host.session.cpuWrite(b.heapFd, 4096, Buffer.from('read from host b'));
    await a.host.postSend(a.qpNum, [
      sendWr({ wrId: 2n, opcode: WrOpcode.WR_OPCODE_RDMA_READ, sgList: [{ addr: BigInt(a.iova + 8192), length: 16, lkey: a.key }], remoteAddr: BigInt(b.iova + 4096), rkey: b.key }),
    ]);
    const [read] = await a.host.completions(a.cq, 1);
    expect(read).to.include({ wrId: 2n, status: WcStatus.WC_STATUS_SUCCESS, opcode: WcOpcode.WC_OPCODE_RDMA_READ, byteLen: 16 });
    expect((await a.host.session.cpuRead(a.heapFd, 8192, 16)).toString()).to.equal('read from host b');
  });

  it('delivers SEND with immediate into a posted receive, and runs atomics on the remote buffer', async () => {
    const { a, b } = await pair();
    await b.host.postRecv(b.qpNum, [{ wrId: 50n, sgList: [{ addr: BigInt(b.iova + 1000), length: 64, lkey: b.key }] }]);
    await a.host.session.cpuWrite(a.heapFd, 0, Buffer.from('ping'));
    await a.host.postSend(a.qpNum, [sendWr({ wrId: 3n, opcode: WrOpcode.WR_OPCODE_SEND_WITH_IMM, sgList: [{ addr: BigInt(a.iova), length: 4, lkey: a.key }], immData: 0xcafe })]);
    const [recv] = await b.host.completions(b.cq, 1);
    expect(recv).to.include({ wrId: 50n, status: WcStatus.WC_STATUS_SUCCESS, opcode: WcOpcode.WC_OPCODE_RECV, byteLen: 4, withImm: true, immData: 0xcafe, srcQp: a.qpNum });
    expect((await b.host.session.cpuRead(b.heapFd, 1000, 4)).toString()).to.equal('ping');
    expect((await a.host.completions(a.cq, 1))[0]).to.include({ wrId: 3n, opcode: WcOpcode.WC_OPCODE_SEND });

    const counter = Buffer.alloc(8);
    counter.writeBigUInt64LE(40n);
    await b.host.session.cpuWrite(b.heapFd, 2048, counter);
    const atomic = (wrId: bigint, opcode: rdma.WrOpcode, into: number, compareAdd: bigint, swap = 0n): rdma.SendWr =>
      sendWr({ wrId, opcode, sgList: [{ addr: BigInt(a.iova + into), length: 8, lkey: a.key }], remoteAddr: BigInt(b.iova + 2048), rkey: b.key, compareAdd, swap });
    await a.host.postSend(a.qpNum, [atomic(4n, WrOpcode.WR_OPCODE_ATOMIC_FETCH_AND_ADD, 512, 2n), atomic(5n, WrOpcode.WR_OPCODE_ATOMIC_CMP_AND_SWP, 520, 42n, 7n)]);
    const wcs = await a.host.completions(a.cq, 2);
    expect(wcs.map((wc) => [wc.wrId, wc.status, wc.opcode])).to.deep.equal([
      [4n, WcStatus.WC_STATUS_SUCCESS, WcOpcode.WC_OPCODE_FETCH_ADD],
      [5n, WcStatus.WC_STATUS_SUCCESS, WcOpcode.WC_OPCODE_COMP_SWAP],
    ]);
    const originals = await a.host.session.cpuRead(a.heapFd, 512, 16);
    expect([originals.readBigUInt64LE(0), originals.readBigUInt64LE(8)]).to.deep.equal([40n, 42n]);
    expect((await b.host.session.cpuRead(b.heapFd, 2048, 8)).readBigUInt64LE(0)).to.equal(7n);
  });

  it('completes a bad lkey with LOC_PROT_ERR, moves the QP to ERR and flushes what follows; a bad WR fails PostSend with p2p-posted', async () => {
    const { a, b } = await pair();
    const write = (wrId: bigint, lkey: number): rdma.SendWr =>
      sendWr({ wrId, opcode: WrOpcode.WR_OPCODE_RDMA_WRITE, sgList: [{ addr: BigInt(a.iova), length: 8, lkey }], remoteAddr: BigInt(b.iova), rkey: b.key });

    const badWr = await expectErrno(a.host.postSend(a.qpNum, [write(1n, a.key), sendWr({ wrId: 2n, opcode: WrOpcode.WR_OPCODE_UNSPECIFIED })]), 'EINVAL');
    expect(badWr.metadata.get('p2p-posted')).to.deep.equal(['1']);
    expect((await a.host.completions(a.cq, 1))[0]).to.include({ wrId: 1n, status: WcStatus.WC_STATUS_SUCCESS });

    await a.host.postSend(a.qpNum, [write(3n, a.key + 0x100), write(4n, a.key)]);
    const wcs = await a.host.completions(a.cq, 2);
    expect(wcs.map((wc) => [wc.wrId, wc.status])).to.deep.equal([
      [3n, WcStatus.WC_STATUS_LOC_PROT_ERR],
      [4n, WcStatus.WC_STATUS_WR_FLUSH_ERR],
    ]);
    expect((await a.host.queryQp(a.qpNum)).qpState).to.equal(QpState.QP_STATE_ERR);
    const attr = await b.host.queryQp(b.qpNum);
    expect(attr.qpState).to.equal(QpState.QP_STATE_RTS);
    expect([...attr.dgid]).to.deep.equal([...a.host.gid]);
    expect(attr.destQpNum).to.equal(a.qpNum);
  });

  it('posts packed WQEs on PostStream and streams packed completions, one watcher per CQ', async () => {
    const { a, b } = await pair();
    const watch = await StreamLog.open(a.host.client.watchCompletions({ ...a.host.ctx, cqHandle: a.cq, packed: true }));
    const second = await rejection(StreamLog.open(a.host.client.watchCompletions({ ...a.host.ctx, cqHandle: a.cq, packed: false })));
    expect(errnoOf(second)).to.equal('EBUSY');

    await a.host.session.cpuWrite(a.heapFd, 0, Buffer.from('0123456789abcdef'));
    const stream = a.host.client.postStream();
    const answers: rdma.PostStreamResponse[] = [];
    stream.on('data', (answer: rdma.PostStreamResponse) => answers.push(answer));
    const wqe = (n: number, opcode: number = WrOpcode.WR_OPCODE_RDMA_WRITE, numSge = 1): Buffer =>
      packWqe({ wrId: BigInt(n), opcode, numSge, addr: a.iova + n, length: 1, lkey: a.key, remoteAddr: b.iova + 300 + n, rkey: b.key });
    stream.write({ ...a.host.ctx, qpNum: a.qpNum, wrs: [], wqes: Buffer.concat([0, 1, 2, 3].map((n) => wqe(n))), seq: 10n });
    // The third WQE claims two SGEs: the two before it go in, the stream stays open.
    stream.write({ ...a.host.ctx, qpNum: a.qpNum, wrs: [], wqes: Buffer.concat([wqe(4), wqe(5), wqe(6, WrOpcode.WR_OPCODE_RDMA_WRITE, 2), wqe(7)]), seq: 11n });
    stream.write({ ...a.host.ctx, qpNum: a.qpNum, wrs: [], wqes: Buffer.concat([8, 9].map((n) => wqe(n))), seq: 12n });
    stream.write({ pid: a.host.session.pid, contextFd: 999, qpNum: a.qpNum, wrs: [], wqes: wqe(10), seq: 13n });
    stream.end();
    await eventually('four answers', () => answers.length === 4);
    expect(answers.map((x) => [x.seq, x.posted, x.errno])).to.deep.equal([
      [10n, 4, ''],
      [11n, 2, 'EINVAL'],
      [12n, 2, ''],
      [13n, 0, 'EBADF'],
    ]);

    await eventually('eight packed completions', () => watch.messages.reduce((n, m) => n + m.packedCqes.length / CQE_BYTES, 0) === 8);
    const cqes = watch.messages.flatMap((m) => decodeCqes(m.packedCqes));
    expect(cqes.map((c) => Number(c.wrId))).to.deep.equal([0, 1, 2, 3, 4, 5, 8, 9]);
    expect(cqes.every((c) => c.status === WcStatus.WC_STATUS_SUCCESS && c.opcode === WcOpcode.WC_OPCODE_RDMA_WRITE && c.qpNum === a.qpNum)).to.equal(true);
    expect(watch.messages.every((m) => m.completions.length === 0)).to.equal(true);
    expect([...(await b.host.session.cpuRead(b.heapFd, 300, 10))]).to.deep.equal([...Buffer.from('012345'), 0, 0, ...Buffer.from('89')]);
    // The watcher polls the CQ: PollCq finds it empty.
    expect((await rpc<rdma.PollCqResponse>((cb) => a.host.client.pollCq({ ...a.host.ctx, cqHandle: a.cq, maxEntries: 16 }, cb))).completions).to.deep.equal([]);

    // Destroying the CQ ends its watch (after the QP on it goes).
    await rpc((cb) => a.host.client.destroyQp({ ...a.host.ctx, qpNum: a.qpNum }, cb));
    await rpc((cb) => a.host.client.destroyCq({ ...a.host.ctx, cqHandle: a.cq }, cb));
    await eventually('the watch to end', () => watch.ended);
  });

  it('reads a vfio-pci BAR range through a dma-buf MR peer to peer; after a revoke no access reaches the BAR, and it works again once restored', async () => {
    const a = await side(await host('rdma-reader', nic0), 0x10000);
    // The accelerator's owner registers BAR2 [0, 64 KiB) with nic1, which sits beside it.
    const owner = await host('accel-owner', nic1);
    const pd = await owner.allocPd();
    const cq = await owner.cq();
    const qpNum = await owner.qp(pd, cq);
    await rpc((cb) => vfioClient.bind({ bdf: ACCEL0, variants: undefined }, cb));
    const pid = owner.session.pid;
    const { fd: deviceFd } = await rpc<vfio.OpenDeviceResponse>((cb) => vfioClient.openDevice({ pid, bdf: ACCEL0 }, cb));
    const regionWrite = (index: number, offset: number, data: Buffer): Promise<unknown> =>
      rpc((cb) => vfioClient.regionWrite({ pid, deviceFd, index, offset: BigInt(offset), data }, cb));
    const regionRead = async (index: number, offset: number, count: number): Promise<Buffer> =>
      (await rpc<vfio.RegionReadResponse>((cb) => vfioClient.regionRead({ pid, deviceFd, index, offset: BigInt(offset), count }, cb))).data;
    const { fd } = await rpc<vfio.DeviceFeatureResponse>((cb) =>
      vfioClient.deviceFeature(
        {
          pid,
          deviceFd,
          argsz: 0,
          flags: VFIO_DEVICE_FEATURE_GET | FEATURE_DMA_BUF,
          payload: { $case: 'dmaBuf', value: { regionIndex: BAR2, openFlags: O_RDWR, flags: 0, dmaRanges: [{ offset: 0n, length: BigInt(SIZE) }] } },
        },
        cb,
      ),
    );
    await regionWrite(BAR2, 256, Buffer.from('device memory'));
    // Device memory is no host memory to pin.
    await expectErrno(rpc((cb) => owner.client.regMr({ ...owner.ctx, pdHandle: pd, heapFd: fd, offset: 0n, length: 4096n, iova: 0n, access: 0 }, cb)), 'EFAULT');
    const barIova = 0x7000_0000;
    const mr = await rpc<rdma.RegDmabufMrResponse>((cb) =>
      owner.client.regDmabufMr({ ...owner.ctx, pdHandle: pd, offset: 0n, length: BigInt(SIZE), iova: BigInt(barIova), fd, access: ALL_ACCESS }, cb),
    );
    const attachment = (await debugfs.bufInfo()).find((b) => b.providerBdf === ACCEL0)!.attachments.find((x) => x.importerBdf === NIC1);
    expect(attachment).to.include({ dynamic: true, peer2peer: true, mapped: true });
    const events = await StreamLog.open(owner.client.watchAsyncEvents(owner.ctx));

    const connect = async (): Promise<void> => {
      await a.host.connect(a.qpNum, { gid: owner.gid, qpNum });
      await owner.connect(qpNum, { gid: a.host.gid, qpNum: a.qpNum });
    };
    const access = async (opcode: rdma.WrOpcode, wrId: bigint): Promise<rdma.WorkCompletion> => {
      await a.host.postSend(a.qpNum, [sendWr({ wrId, opcode, sgList: [{ addr: BigInt(a.iova), length: 13, lkey: a.key }], remoteAddr: BigInt(barIova + 256), rkey: mr.rkey })]);
      return (await a.host.completions(a.cq, 1))[0]!;
    };
    await connect();
    expect(await access(WrOpcode.WR_OPCODE_RDMA_READ, 1n)).to.include({ status: WcStatus.WC_STATUS_SUCCESS, byteLen: 13 });
    expect((await a.host.session.cpuRead(a.heapFd, 0, 13)).toString()).to.equal('device memory');

    // Clearing MEM revokes: by the time the write returns, the NIC has zapped the MR's translation.
    const command = (await regionRead(CONFIG_REGION, PCI_COMMAND, 2)).readUInt16LE(0);
    const u16 = (value: number): Buffer => Buffer.from([value & 0xff, value >> 8]);
    await regionWrite(CONFIG_REGION, PCI_COMMAND, u16(command & ~PCI_COMMAND_MEMORY));
    expect(await access(WrOpcode.WR_OPCODE_RDMA_READ, 2n)).to.include({ wrId: 2n, status: WcStatus.WC_STATUS_REM_ACCESS_ERR });
    await eventually('QP_ACCESS_ERR on the responder', () => events.messages.some((e) => e.eventType === AsyncEventType.ASYNC_EVENT_TYPE_QP_ACCESS_ERR && e.qpNum === qpNum));
    await a.host.session.cpuWrite(a.heapFd, 0, Buffer.from('NOT ALLOWED!!'));
    await connect();
    expect(await access(WrOpcode.WR_OPCODE_RDMA_WRITE, 3n)).to.include({ wrId: 3n, status: WcStatus.WC_STATUS_REM_ACCESS_ERR });

    // Restored: the BAR holds what it held, and the MR maps again on its next access.
    await regionWrite(CONFIG_REGION, PCI_COMMAND, u16(command));
    expect((await regionRead(BAR2, 256, 13)).toString()).to.equal('device memory');
    await connect();
    await a.host.session.cpuWrite(a.heapFd, 0, Buffer.alloc(13));
    expect(await access(WrOpcode.WR_OPCODE_RDMA_READ, 4n)).to.include({ status: WcStatus.WC_STATUS_SUCCESS });
    expect((await a.host.session.cpuRead(a.heapFd, 0, 13)).toString()).to.equal('device memory');
    events.close();
  });

  it('destroys every object of a context when its file is released, ending its streams and detaching its buffers', async () => {
    const h = await host('closes', nic0);
    const pd = await h.allocPd();
    const { heapFd, mr } = await h.heapMr(pd, 0x4000);
    const cq = await h.cq();
    const qpNum = await h.qp(pd, cq);
    const heapId = (await h.session.resolveFd(heapFd)).fileId;
    const attachments = async (): Promise<number> => (await debugfs.bufInfo()).find((b) => b.bufferId === heapId)?.attachments.length ?? -1;
    expect(await attachments()).to.equal(1);
    const completions = await StreamLog.open(h.client.watchCompletions({ ...h.ctx, cqHandle: cq, packed: false }));
    const events = await StreamLog.open(h.client.watchAsyncEvents(h.ctx));

    await h.session.closeFd(h.fd);
    await eventually('the context streams to end', () => completions.ended && events.ended);
    expect(completions.error).to.equal(undefined);
    expect(await attachments()).to.equal(0);
    await expectErrno(h.queryQp(qpNum), 'EBADF');
    await expectErrno(rpc((cb) => h.client.deregMr({ ...h.ctx, mrHandle: mr.mrHandle }, cb)), 'EBADF');
  });

  it('asks the registry about a context fd once, not on every verb, and forgets the number when it is closed', async () => {
    const resolves = async (): Promise<number> => {
      const handled = await registryServer.metrics.registry.getSingleMetric('grpc_server_handled_total')!.get();
      return handled.values.filter((v) => String(v.labels.method).endsWith('/ResolveFd')).reduce((sum, v) => sum + v.value, 0);
    };
    const h = await host('fd-cache', nic0);
    const allocPd = (contextFd: number): Promise<rdma.AllocPdResponse> => rpc((cb) => h.client.allocPd({ pid: h.session.pid, contextFd }, cb));
    await allocPd(h.fd);
    const before = await resolves();
    for (let i = 0; i < 20; i++) await allocPd(h.fd);
    expect(await resolves(), 'ResolveFd calls for 20 verbs on a known fd').to.equal(before);

    const dup = await h.session.dupFd(h.fd);
    await allocPd(dup);
    await allocPd(dup);
    expect(await resolves(), 'ResolveFd calls for a dup').to.equal(before + 1);

    // Closed: the number names nothing, then a heap buffer (the lowest free fd); the dup keeps the context.
    await h.session.closeFd(h.fd);
    await expectErrno(allocPd(h.fd), 'EBADF');
    const { fd: heapFd } = await h.session.heapAllocate(4096);
    expect(heapFd).to.equal(h.fd);
    await expectErrno(allocPd(h.fd), 'EBADF');
    expect((await allocPd(dup)).pdHandle).to.be.greaterThan(0);
  });

  it('will not start on a function another NIC claimed (EBUSY) or on one that is not a NIC (ENODEV)', async () => {
    const busy = await rejection(startRdmaNic(nicEnv(NIC0, '127.0.0.4'), { fabric: new InMemoryFabric() }));
    expect(busy).to.be.instanceOf(ErrnoError).with.property('errno', 'EBUSY');
    for (const bdf of [NVME0, '0000:0a:00.0']) {
      const missing = await rejection(startRdmaNic(nicEnv(bdf, '127.0.0.4'), { fabric: new InMemoryFabric() }));
      expect(missing, bdf).to.be.instanceOf(ErrnoError).with.property('errno', 'ENODEV');
    }
  });
});
