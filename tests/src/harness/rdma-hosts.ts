import * as fs from 'node:fs';
import { channelCredentials, loadTlsConfig } from '@p2p/auth';
import { type DmaBufImporter, RegistrySession } from '@p2p/dmabuf-client';
import { vfio } from '@p2p/proto';
import { errnoOf } from '@p2p/status';
import { asAdmin, freePort, type ServiceProcess, startServiceProcess, tempShmDir } from '@p2p/testing';
import { type HostMr, type QueueMode, VerbsContext } from '@p2p/verbs';
import { rpc } from './rpc';

/** nic0 sits beside nvme0; nic1 beside accel0 (P2P BUS_ADDR), in pci-emu's default topology. */
export const NIC0 = '0000:04:00.0';
export const NIC1 = '0000:09:00.0';
export const ACCEL0 = '0000:07:00.0';
const BAR2 = 2;
const FEATURE_DMA_BUF = 11;
const VFIO_DEVICE_FEATURE_GET = 1 << 16;
const O_RDWR = 2;

/** One NIC's process and the address its GID names. */
export interface NicProcess {
  readonly name: string;
  readonly bdf: string;
  readonly ip: string;
  process: ServiceProcess;
}

/**
 * The whole stack as separate processes, as deployed: pci-emu, the
 * registry, vfio-pci and two rdma-nic instances (nic0 on 127.0.0.2, nic1 on
 * 127.0.0.3, one wire port), on one segment directory.
 */
export class RdmaStack {
  private constructor(
    readonly shmDir: string,
    readonly wirePort: number,
    readonly pciEmu: ServiceProcess,
    readonly registry: ServiceProcess,
    readonly vfioPci: ServiceProcess,
    readonly nics: readonly [NicProcess, NicProcess],
    private readonly nicEnv: NodeJS.ProcessEnv,
  ) {}

  /** `env` goes to every service (P2P_TLS_*, say); `nicEnv` to the NICs only. */
  /**
   * `nicIps` and `wirePort` place the NICs elsewhere on the wire: a second
   * stack with other addresses on the first one's port is another host, one
   * that shares no tmpfs with it.
   */
  static async start(
    options: { env?: NodeJS.ProcessEnv; nicEnv?: NodeJS.ProcessEnv; nicNodeArgs?: string[]; nicIps?: readonly [string, string]; wirePort?: number } = {},
  ): Promise<RdmaStack> {
    const shmDir = tempShmDir();
    const env = { P2P_SHM_DIR: shmDir, LOG_LEVEL: 'warn', ...options.env };
    const started: ServiceProcess[] = [];
    try {
      const pciEmu = await startServiceProcess('pci-emu', 'PCI_EMU', { env });
      started.push(pciEmu);
      const registry = await startServiceProcess('dmabuf-registry', 'DMABUF_REGISTRY', { env: { ...env, PCI_EMU_ADDRESS: pciEmu.address } });
      started.push(registry);
      const deps = { ...env, PCI_EMU_ADDRESS: pciEmu.address, DMABUF_REGISTRY_ADDRESS: registry.address };
      const vfioPci = await startServiceProcess('vfio-pci', 'VFIO_PCI', { env: deps });
      started.push(vfioPci);
      const wirePort = options.wirePort ?? (await freePort());
      const nicEnv = { ...deps, RDMA_NIC_WIRE_PORT: String(wirePort), ...options.nicEnv };
      const nics: [NicProcess, NicProcess] = [
        { name: 'nic0', bdf: NIC0, ip: options.nicIps?.[0] ?? '127.0.0.2', process: undefined as unknown as ServiceProcess },
        { name: 'nic1', bdf: NIC1, ip: options.nicIps?.[1] ?? '127.0.0.3', process: undefined as unknown as ServiceProcess },
      ];
      for (const nic of nics) {
        nic.process = await startNic(nic, nicEnv, undefined, options.nicNodeArgs);
        started.push(nic.process);
      }
      return new RdmaStack(shmDir, wirePort, pciEmu, registry, vfioPci, nics, nicEnv);
    } catch (error) {
      for (const service of started.reverse()) await service.stop('SIGKILL');
      fs.rmSync(shmDir, { recursive: true, force: true });
      throw error;
    }
  }

  /** Starts a NIC again (after a kill) on its old port. */
  async restartNic(index: 0 | 1): Promise<void> {
    const nic = this.nics[index];
    nic.process = await startNic(nic, this.nicEnv, nic.process.port);
  }

  /** A process of host `index` (the host of nic0 or nic1) with its verbs context. */
  host(index: 0 | 1, name = `host-${index}`, queues?: QueueMode): Promise<RdmaHost> {
    return RdmaHost.open(name, this.registry.address, this.nics[index].process.address, this.shmDir, queues);
  }

  async stop(): Promise<void> {
    for (const service of [this.nics[1].process, this.nics[0].process, this.vfioPci, this.registry, this.pciEmu]) await service.stop('SIGKILL');
    fs.rmSync(this.shmDir, { recursive: true, force: true });
  }
}

function startNic(nic: NicProcess, env: NodeJS.ProcessEnv, port?: number, nodeArgs?: string[]): Promise<ServiceProcess> {
  return startServiceProcess('rdma-nic', 'RDMA_NIC', { env: { ...env, RDMA_NIC_BDF: nic.bdf, RDMA_NIC_GID_ADDRESS: nic.ip }, port, nodeArgs });
}

/** Host memory of an application: a system-heap dma-buf it maps for the CPU and registers with its NIC. */
export interface HostBuffer {
  readonly fd: number;
  readonly size: number;
  readonly iova: number;
  readonly mr: HostMr;
  /** The application's own CPU mapping of the buffer. */
  readonly cpu: DmaBufImporter;
}

/** Device memory: a vfio-pci dma-buf of a BAR (accel0's BAR2 unless told) registered as a dma-buf MR. */
export interface BarBuffer {
  readonly deviceFd: number;
  readonly fd: number;
  readonly size: number;
  readonly iova: number;
  readonly mr: HostMr;
}

/**
 * One application process on one host: a registry session (its pid and fd
 * table), a verbs context on its NIC and one PD.
 */
export class RdmaHost {
  private constructor(
    readonly session: RegistrySession,
    readonly ctx: VerbsContext,
    readonly gid: Buffer,
    readonly pd: number,
  ) {}

  /** `queues`: how the context posts and polls (VerbsContext's default, calls, unless told). */
  static async open(name: string, registryAddress: string, nicAddress: string, shmDir: string, queues?: QueueMode): Promise<RdmaHost> {
    const session = await RegistrySession.open(registryAddress, { name, shmDir });
    try {
      const ctx = await VerbsContext.open(nicAddress, session, undefined, { queues });
      const { gid } = await ctx.queryPort(1);
      return new RdmaHost(session, ctx, Buffer.from(gid), await ctx.allocPd());
    } catch (error) {
      await session.close();
      throw error;
    }
  }

  /** A heap buffer of `size` bytes, mapped here and registered at `iova` with `access`. */
  async hostBuffer(size: number, iova: number, access: number): Promise<HostBuffer> {
    const { fd } = await this.session.heapAllocate(size);
    const cpu = await this.session.importDmaBuf({ fd, importerBdf: '' });
    await cpu.map();
    const mr = await this.ctx.regMr(this.pd, { heapFd: fd, offset: 0, length: size, iova, access });
    return { fd, size, iova, mr, cpu };
  }

  /**
   * Binds the device (accel0 unless told) to vfio-pci if it is not yet,
   * opens it, exports [offset, offset + size) of its BAR (BAR2 unless told)
   * as a dma-buf and registers it with this host's NIC.
   */
  async barBuffer(vfioAddress: string, offset: number, size: number, iova: number, access: number, device = { bdf: ACCEL0, bar: BAR2 }): Promise<BarBuffer> {
    const client = new vfio.VfioPciServiceClient(vfioAddress, channelCredentials(loadTlsConfig()), { interceptors: [this.session.interceptor] });
    const admin = asAdmin(this.session.shmDir);
    const root = new vfio.VfioPciServiceClient(vfioAddress, admin.credentials, admin.options);
    try {
      await rpc((cb) => root.bind({ bdf: device.bdf, variants: undefined }, cb)).catch((error: unknown) => {
        if (errnoOf(error) !== 'EBUSY') throw error;
      });
      const deviceFd = (await rpc<vfio.OpenDeviceResponse>((cb) => client.openDevice({ pid: this.session.pid, bdf: device.bdf }, cb))).fd;
      const { fd } = await rpc<vfio.DeviceFeatureResponse>((cb) =>
        client.deviceFeature(
          {
            pid: this.session.pid,
            deviceFd,
            argsz: 0,
            flags: VFIO_DEVICE_FEATURE_GET | FEATURE_DMA_BUF,
            payload: { $case: 'dmaBuf', value: { regionIndex: device.bar, openFlags: O_RDWR, flags: 0, dmaRanges: [{ offset: BigInt(offset), length: BigInt(size) }] } },
          },
          cb,
        ),
      );
      const mr = await this.ctx.regDmabufMr(this.pd, { fd, offset: 0, length: size, iova, access });
      return { deviceFd, fd, size, iova, mr };
    } finally {
      client.close();
      root.close();
    }
  }

  /** A CQ and an RC QP on it, connected later with connect(). */
  async rcQp(options: { cqe?: number; maxSendWr?: number; maxRecvWr?: number; sqSigAll?: boolean } = {}): Promise<{ cq: number; qpNum: number }> {
    const { cqHandle } = await this.ctx.createCq(options.cqe ?? 4095);
    const { qpNum } = await this.ctx.createQp({
      pdHandle: this.pd,
      sendCqHandle: cqHandle,
      recvCqHandle: cqHandle,
      cap: { maxSendWr: options.maxSendWr ?? 1024, maxRecvWr: options.maxRecvWr ?? 256, maxSendSge: 1, maxRecvSge: 1 },
      sqSigAll: options.sqSigAll ?? false,
    });
    return { cq: cqHandle, qpNum };
  }

  async close(): Promise<void> {
    this.ctx.close();
    await this.session.close();
  }
}
