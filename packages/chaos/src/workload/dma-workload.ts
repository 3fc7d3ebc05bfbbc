import { RegistrySession } from '@p2p/dmabuf-client';
import { errnoOf } from '@p2p/status';
import { DMA_ERRORS, DMA_SRC_IOVA, DMA_STATUS, DMA_STATUS_DONE, DMA_STATUS_ERROR } from '@p2p/pci-emu';
import { type DmaBuffer, doorbellRegisters, syncForCpu, syncForDevice, VfioDmaSpace } from '@p2p/user-driver';
import { O_RDWR, pciRegs, vfioUapi } from '@p2p/vfio-pci';
import type { Deployment } from '../driver/driver';
import type { HistoryRecorder, Op } from '../history';
import { digestOf, payloadOf, type DmaTarget, type PlannedCopy, type WorkloadShape } from '../plan/workload-plan';
import type { DeviceLock } from './device-lock';
import { message, sleep, withTimeout, WorkerLife } from './step';
import { bindToVfioPci, type VfioChannels, vfioChannels } from './vfio-process';

/** The DMA engine's function, and the controller whose memory buffer (BAR2) copies land in, peer to peer. */
export const DMA_DEVICES = { engine: { name: 'accel0', bdf: '0000:07:00.0' }, cmb: { name: 'nvme1', bdf: '0000:08:00.0', bar: 2 } } as const;
const { PCI_COMMAND, PCI_COMMAND_MEMORY, PCI_COMMAND_MASTER } = pciRegs;
const { VFIO_PCI_BAR0_REGION_INDEX, VFIO_PCI_CONFIG_REGION_INDEX, VFIO_DEVICE_FEATURE_GET, VFIO_DEVICE_FEATURE_DMA_BUF } = vfioUapi;
const DMA_ERROR_NAMES = new Map<number, string>(Object.entries(DMA_ERRORS).map(([name, code]) => [code, name]));
const PACE_MS = 5;
const PROCESS = 'dma';

/**
 * The process that owns accel0 through vfio-pci, whose driver rings the
 * engine: vfio_device_open() allows one owner at a time, so while the RDMA
 * workload runs it is host X (which exports accel0's BAR2), else a process
 * of the DMA worker's own.
 */
export interface AccelOwner {
  readonly session: RegistrySession;
  /** Resolves when the owner is going away: the worker stops and calls release(). */
  readonly ending: Promise<string>;
  /** The worker closed what it opened in the owner's process. */
  release(): void;
}

export interface DmaWorkloadOptions {
  readonly deployment: Deployment;
  readonly history: HistoryRecorder;
  readonly shape: WorkloadShape;
  readonly plan: Iterator<PlannedCopy>;
  /** Host X while the RDMA workload runs (undefined once the campaign ended); undefined: the worker opens its own process. */
  readonly borrowOwner?: () => Promise<AccelOwner | undefined>;
  readonly deviceLock: DeviceLock;
  /** Bumps when pci-emu dies: device memory of an older generation is other memory. */
  readonly pciGeneration: () => number;
  readonly log: (line: string) => void;
}

/** What one incarnation opened in the owner's process, closed in reverse. */
interface Engine {
  readonly number: number;
  readonly generation: number;
  readonly owner: AccelOwner;
  readonly channels: VfioChannels;
  readonly space: VfioDmaSpace;
  readonly accelFd: number;
  readonly nvmeFd: number;
  readonly cmbFd: number;
  readonly cmbIova: bigint;
  readonly source: DmaBuffer;
  readonly host: DmaBuffer;
  /** Each CMB slot's digest when this incarnation began. */
  readonly cmbInitial: readonly string[];
  broken: string | undefined;
}

/**
 * The DMA worker: a driver that maps a source and a destination heap
 * buffer and nvme1's CMB (a vfio-pci dma-buf, IOMMU_IOAS_MAP_FILE) into an
 * iommufd IOAS with accel0 attached, and rings register transfers of seeded
 * payloads into a slot of either destination. Each copy is a write of the
 * slot's region when it is rung: ok when STATUS reads DONE, fail with the
 * ERROR register's name (nothing moved: the engine checks the whole
 * transfer first), info when the worker cannot tell (the doorbell write's
 * answer or STATUS lost, or a DATA error, after which some bytes may have
 * landed). Reads read a slot as the CPU sees it: the host buffer's mapping,
 * or the CMB through vfio-pci's BAR2 region.
 */
export class DmaWorkload {
  readonly #o: DmaWorkloadOptions;
  readonly #life: WorkerLife;
  #count = 0;

  constructor(options: DmaWorkloadOptions) {
    this.#o = options;
    this.#life = new WorkerLife('dma', options.log);
  }

  stop(): void {
    this.#life.stop();
  }

  closeLeftovers(): Promise<void> {
    return this.#life.closeLeftovers();
  }

  async run(): Promise<void> {
    while (!this.#life.stopped) {
      const owner = await this.#owner().catch((error: unknown) => {
        this.#o.log(`dma worker: no owner for accel0: ${message(error)}`);
        return undefined;
      });
      if (owner === undefined) {
        if (!this.#life.stopped) await this.#life.nap(250);
        continue;
      }
      const engine = await this.#setUp(owner).catch((error: unknown) => {
        this.#o.log(`dma worker set-up failed: ${message(error)}`);
        return undefined;
      });
      if (engine === undefined) {
        await this.#release(owner);
        await this.#life.nap(250);
        continue;
      }
      void owner.ending.then((reason) => {
        engine.broken ??= `accel0's owner is going away: ${reason}`;
        this.#life.wake();
      });
      await this.#drive(engine);
      if (!this.#life.stopped) this.#o.log(`dma worker ${engine.number} ended: ${engine.broken}`);
      await this.#tearDown(engine);
    }
  }


  async #owner(): Promise<AccelOwner | undefined> {
    if (this.#o.borrowOwner !== undefined) return this.#o.borrowOwner();
    const { deployment } = this.#o;
    const session = await withTimeout(RegistrySession.open(deployment.registry, { name: `chaos-dma-${this.#count + 1}`, shmDir: deployment.shmDir, tls: deployment.tls }), 'opening the dma process');
    return { session, ending: new Promise<string>(() => undefined), release: () => undefined };
  }

  /** Borrowed: hands host X back. Owned: closes the process. */
  async #release(owner: AccelOwner): Promise<void> {
    owner.release();
    if (this.#o.borrowOwner === undefined) await this.#life.close(owner.session);
  }

  async #setUp(owner: AccelOwner): Promise<Engine> {
    const { deployment, shape, deviceLock } = this.#o;
    const { session } = owner;
    const pid = session.pid;
    const channels = vfioChannels(deployment, session);
    const { device, deviceIommufd } = channels.clients;
    const opened: number[] = [];
    let space: VfioDmaSpace | undefined;
    const setUp = async (): Promise<Engine> => {
      const generation = this.#o.pciGeneration();
      for (const { bdf } of Object.values(DMA_DEVICES)) await bindToVfioPci(deployment, bdf);
      space = await VfioDmaSpace.open(session, channels.clients, { cpuAccess: deployment.cpuAccess });
      const length = shape.slots * shape.slotBytes;
      // nvme1 decodes its BARs (pci_enable_device()); its CMB's first slots as a dma-buf in the IOAS.
      const { fd: nvmeFd } = await device.openDevice({ pid, bdf: DMA_DEVICES.cmb.bdf });
      opened.push(nvmeFd);
      await this.#setCommand(channels, pid, nvmeFd, PCI_COMMAND_MEMORY);
      const { fd: cmbFd } = await device.deviceFeature({
        pid,
        deviceFd: nvmeFd,
        argsz: 0,
        flags: VFIO_DEVICE_FEATURE_GET | VFIO_DEVICE_FEATURE_DMA_BUF,
        payload: { $case: 'dmaBuf', value: { regionIndex: DMA_DEVICES.cmb.bar, openFlags: O_RDWR, flags: 0, dmaRanges: [{ offset: 0n, length: BigInt(length) }] } },
      });
      opened.push(cmbFd);
      const cmbIova = await space.mapFile(cmbFd, length);
      const source = await space.allocate(shape.slotBytes);
      const host = await space.allocate(length);
      // accel0 through a device file of this incarnation's own (the owner may hold another): decode and bus mastering, then the IOAS.
      const { fd: accelFd } = await device.openDevice({ pid, bdf: DMA_DEVICES.engine.bdf });
      opened.push(accelFd);
      // Under the device lock (never held past a hung call): the owner's revoke clears Memory Space only while holding it, so setting it here undoes no revoke.
      await deviceLock.hold(() => withTimeout(this.#setCommand(channels, pid, accelFd, PCI_COMMAND_MEMORY | PCI_COMMAND_MASTER), 'enabling accel0', 3000));
      await deviceIommufd.bindIommufd({ pid, deviceFd: accelFd, flags: 0, iommufd: space.ictx });
      await deviceIommufd.attachIommufdPt({ pid, deviceFd: accelFd, flags: 0, ptId: space.ioasId, pasid: 0 });
      const cmb = Buffer.from((await device.regionRead({ pid, deviceFd: nvmeFd, index: DMA_DEVICES.cmb.bar, offset: 0n, count: length })).data);
      const cmbInitial = Array.from({ length: shape.slots }, (_, slot) => digestOf(cmb.subarray(slot * shape.slotBytes, (slot + 1) * shape.slotBytes)));
      return { number: ++this.#count, generation, owner, channels, space, accelFd, nvmeFd, cmbFd, cmbIova, source, host, cmbInitial, broken: undefined };
    };
    try {
      return await withTimeout(setUp(), 'setting up the dma engine');
    } catch (error) {
      await this.#closeAll(session, opened, space).catch(() => undefined);
      channels.close();
      throw error;
    }
  }

  async #setCommand(channels: VfioChannels, pid: number, deviceFd: number, bits: number): Promise<void> {
    const config = { pid, deviceFd, index: VFIO_PCI_CONFIG_REGION_INDEX, offset: BigInt(PCI_COMMAND) };
    const command = Buffer.from((await channels.clients.device.regionRead({ ...config, count: 2 })).data).readUInt16LE(0);
    const data = Buffer.alloc(2);
    data.writeUInt16LE(command | bits);
    await channels.clients.device.regionWrite({ ...config, data });
  }

  /** Device fds in reverse (accel0 leaves the IOAS first), then the IOAS and the heap buffers. */
  async #closeAll(session: RegistrySession, fds: readonly number[], space: VfioDmaSpace | undefined): Promise<void> {
    for (const fd of [...fds].reverse()) await session.closeFd(fd);
    await space?.close();
  }

  async #tearDown(engine: Engine): Promise<void> {
    const { session } = engine.owner;
    await withTimeout(this.#closeAll(session, [engine.nvmeFd, engine.cmbFd, engine.accelFd], engine.space), 'closing the dma engine').catch((error: unknown) =>
      this.#o.log(`dma worker clean-up: ${message(error)}`),
    );
    engine.channels.close();
    await this.#release(engine.owner);
  }

  #region(engine: Engine, target: DmaTarget, slot: number): string {
    return target === 'host' ? `dma-host[${slot}]@${engine.number}` : `${DMA_DEVICES.cmb.name}:cmb[${slot}]@${engine.number}`;
  }

  async #drive(engine: Engine): Promise<void> {
    const { history, shape, plan } = this.#o;
    const zero = digestOf(Buffer.alloc(shape.slotBytes));
    while (!this.#life.stopped && engine.broken === undefined) {
      const step = plan.next().value as PlannedCopy;
      const region = this.#region(engine, step.target, step.slot);
      if (step.op === 'copy') {
        const payload = payloadOf(step.payloadSeed, shape.slotBytes);
        payload.copy(engine.source.view);
        try {
          await withTimeout(syncForDevice(engine.source, 0, shape.slotBytes), 'syncing the source');
        } catch (error) {
          engine.broken = `syncing the source: ${message(error)}`;
          break;
        }
        const destination = (step.target === 'host' ? engine.host.address : engine.cmbIova) + BigInt(step.slot * shape.slotBytes);
        const op = history.invoke(PROCESS, 'write', { region, digest: digestOf(payload), engine: DMA_DEVICES.engine.name, length: shape.slotBytes });
        await this.#copy(engine, op, engine.source.address, destination);
      } else {
        const op = history.invoke(PROCESS, 'read', { region, initial: step.target === 'host' ? zero : engine.cmbInitial[step.slot] });
        await this.#read(engine, op, step.target, step.slot);
      }
      await sleep(PACE_MS);
    }
  }

  /** Rings one transfer: SRC, DST and LEN with the doorbell in one write, then STATUS, ERROR and FAULT_IOVA. */
  async #copy(engine: Engine, op: Op, src: bigint, dst: bigint): Promise<void> {
    const { history, shape } = this.#o;
    const { device } = engine.channels.clients;
    const bar0 = { pid: engine.owner.session.pid, deviceFd: engine.accelFd, index: VFIO_PCI_BAR0_REGION_INDEX };
    try {
      await withTimeout(device.regionWrite({ ...bar0, offset: BigInt(DMA_SRC_IOVA), data: doorbellRegisters(src, dst, shape.slotBytes) }), 'the doorbell write');
    } catch (error) {
      // EIO: vfio-pci refused the write for decode off (revoked, or a fault): the doorbell never rang.
      if (errnoOf(error) === 'EIO') history.complete(op, 'fail', {}, 'EIO');
      else history.complete(op, 'info', {}, message(error));
      engine.broken = `the doorbell: ${message(error)}`;
      return;
    }
    let status: number;
    let error: number;
    let faultIova: bigint;
    try {
      const { data } = await withTimeout(device.regionRead({ ...bar0, offset: BigInt(DMA_STATUS), count: 16 }), 'reading STATUS');
      const registers = Buffer.from(data);
      [status, error, faultIova] = [registers.readUInt32LE(0), registers.readUInt32LE(4), registers.readBigUInt64LE(8)];
    } catch (failure) {
      history.complete(op, 'info', {}, message(failure));
      engine.broken = `STATUS: ${message(failure)}`;
      return;
    }
    const errorName = DMA_ERROR_NAMES.get(error) ?? `0x${error.toString(16)}`;
    if (status === DMA_STATUS_DONE) {
      history.complete(op, 'ok', { status: 'DONE' });
    } else if (status === DMA_STATUS_ERROR && errorName !== 'DATA') {
      history.complete(op, 'fail', { status: 'ERROR', faultIova: `0x${faultIova.toString(16)}` }, errorName);
      engine.broken = `the copy ended in ${errorName}`;
    } else {
      // DATA (some bytes may have landed), or STATUS neither DONE nor ERROR (all ones: the function went away).
      history.complete(op, 'info', { status: `0x${status.toString(16)}` }, errorName);
      engine.broken = `the copy ended with STATUS 0x${status.toString(16)}, ERROR ${errorName}`;
    }
  }

  /** A slot as the CPU reads it: the host buffer through its mapping, the CMB through vfio-pci's BAR2 region. */
  async #read(engine: Engine, op: Op, target: DmaTarget, slot: number): Promise<void> {
    const { history, shape } = this.#o;
    const at = slot * shape.slotBytes;
    if (target === 'host') {
      try {
        await withTimeout(syncForCpu(engine.host, at, shape.slotBytes), 'syncing the host buffer');
      } catch (error) {
        history.complete(op, 'fail', {}, errnoOf(error) ?? message(error));
        engine.broken = `syncing the host buffer: ${message(error)}`;
        return;
      }
      history.complete(op, 'ok', { digest: digestOf(engine.host.view.subarray(at, at + shape.slotBytes)) });
      return;
    }
    try {
      const { data } = await withTimeout(
        engine.channels.clients.device.regionRead({ pid: engine.owner.session.pid, deviceFd: engine.nvmeFd, index: DMA_DEVICES.cmb.bar, offset: BigInt(at), count: shape.slotBytes }),
        'reading the CMB',
      );
      // pci-emu died since the incarnation began: what was read is another generation's memory.
      if (this.#o.pciGeneration() !== engine.generation) {
        history.complete(op, 'info', {}, 'pci-emu restarted');
        engine.broken = 'pci-emu restarted';
        return;
      }
      history.complete(op, 'ok', { digest: digestOf(data) });
    } catch (error) {
      history.complete(op, 'fail', {}, errnoOf(error) ?? message(error));
      engine.broken = `reading the CMB: ${message(error)}`;
    }
  }
}
