import { RegistrySession } from '@p2p/dmabuf-client';
import { NVME_CMD_READ, NVME_CMD_WRITE, nvmeStatusName } from '@p2p/pci-emu';
import { type DmaBuffer, NvmeDriver, type NvmeQueuePair, NvmeStatusError, syncForCpu, syncForDevice, VfioDmaSpace } from '@p2p/user-driver';
import type { Deployment } from '../driver/driver';
import type { HistoryRecorder, Op } from '../history';
import { digestOf, payloadOf, type PlannedBlockIo, type WorkloadShape } from '../plan/workload-plan';
import { message, sleep, withTimeout, WorkerLife } from './step';
import { bindToVfioPci, vfioChannels } from './vfio-process';

/** The controller the NVMe worker owns: nvme0 (nvme1 belongs to the DMA worker, whose copies land in its CMB; vfio-pci has one owner per device). */
export const NVME_DEVICE = { name: 'nvme0', bdf: '0000:03:00.0' } as const;
const NSID = 1;
/** A command with no completion after this long: the controller was reset or went away. */
const COMMAND_DEADLINE_MS = 3000;
const PACE_MS = 5;
const PROCESS = 'nvme';

export interface NvmeWorkloadOptions {
  readonly deployment: Deployment;
  readonly history: HistoryRecorder;
  readonly shape: WorkloadShape;
  readonly plan: Iterator<PlannedBlockIo>;
  readonly log: (line: string) => void;
}

/** One process that owns the controller, brought up by the user-space driver, with one I/O queue pair and one data buffer. */
interface Controller {
  readonly session: RegistrySession;
  readonly space: VfioDmaSpace;
  readonly deviceFd: number;
  readonly driver: NvmeDriver;
  readonly queue: NvmeQueuePair;
  readonly data: DmaBuffer;
  readonly blockSize: number;
  readonly close: () => void;
}

/**
 * The NVMe worker: a process that owns nvme0 through vfio-pci (iommufd,
 * DMA memory in its IOAS), brings the controller up as SPDK's driver does,
 * and runs the plan's 4 KiB Writes and Reads, one slot an LBA range, and
 * Flushes. Each Write is a write of region `nvme0:lba:<first LBA>`, each
 * Read a read of it with what came back. A command that fails with a status
 * did not happen (fail, the status's name); one whose controller or
 * process went away may have (info). Then the worker starts over: a new
 * process, the controller reset and brought up again.
 */
export class NvmeWorkload {
  readonly #o: NvmeWorkloadOptions;
  readonly #life: WorkerLife;
  #count = 0;
  /** Each slot's digest before the campaign wrote it: the namespace outlives pci-emu, and a compose deployment, the campaign. */
  #initial: readonly string[] | undefined;

  constructor(options: NvmeWorkloadOptions) {
    this.#o = options;
    this.#life = new WorkerLife('nvme', options.log);
  }

  stop(): void {
    this.#life.stop();
  }

  closeLeftovers(): Promise<void> {
    return this.#life.closeLeftovers();
  }

  async run(): Promise<void> {
    while (!this.#life.stopped) {
      const controller = await this.#bringUp().catch((error: unknown) => {
        this.#o.log(`nvme worker: bringing ${NVME_DEVICE.name} up failed: ${message(error)}`);
        return undefined;
      });
      if (controller === undefined) {
        await this.#life.nap(250);
        continue;
      }
      const reason = await this.#drive(controller);
      if (!this.#life.stopped) this.#o.log(`nvme worker ${this.#count} ended: ${reason}`);
      await this.#close(controller);
    }
  }


  async #bringUp(): Promise<Controller> {
    const { deployment, shape } = this.#o;
    const session = await withTimeout(RegistrySession.open(deployment.registry, { name: `chaos-nvme-${++this.#count}`, shmDir: deployment.shmDir, tls: deployment.tls }), 'opening the nvme process');
    const channels = vfioChannels(deployment, session);
    const up = async (): Promise<Controller> => {
      await bindToVfioPci(deployment, NVME_DEVICE.bdf);
      const space = await VfioDmaSpace.open(session, channels.clients, { cpuAccess: deployment.cpuAccess });
      const device = await space.openDevice(NVME_DEVICE.bdf);
      // NvmeDriver.start() clears CC.EN first: whatever a fault left, the controller starts from reset.
      const driver = await NvmeDriver.start(device.registers, space);
      const { blockSize } = await driver.identifyNamespace(NSID);
      const queue = await driver.createIoQueuePair(1, 16);
      const data = await space.allocate(shape.slotBytes);
      const controller: Controller = { session, space, deviceFd: device.fd, driver, queue, data, blockSize, close: () => channels.close() };
      this.#initial ??= await this.#readInitial(controller);
      return controller;
    };
    try {
      return await withTimeout(up(), `bringing ${NVME_DEVICE.name} up`);
    } catch (error) {
      channels.close();
      await this.#life.close(session);
      throw error;
    }
  }

  async #readInitial(controller: Controller): Promise<readonly string[]> {
    const initial: string[] = [];
    for (let slot = 0; slot < this.#o.shape.slots; slot++) {
      await this.#io(controller, NVME_CMD_READ, slot);
      await syncForCpu(controller.data, 0, this.#o.shape.slotBytes);
      initial.push(digestOf(controller.data.view.subarray(0, this.#o.shape.slotBytes)));
    }
    return initial;
  }

  #lba(controller: Controller, slot: number): bigint {
    return BigInt((slot * this.#o.shape.slotBytes) / controller.blockSize);
  }

  #io(controller: Controller, opcode: typeof NVME_CMD_READ | typeof NVME_CMD_WRITE, slot: number): Promise<unknown> {
    const { driver, queue, data, blockSize } = controller;
    return withTimeout(driver.io(queue, opcode, NSID, this.#lba(controller, slot), this.#o.shape.slotBytes / blockSize, data.address, blockSize), 'the command', COMMAND_DEADLINE_MS);
  }

  /** Runs the plan on `controller` until a command does not succeed or the campaign ends; the reason. */
  async #drive(controller: Controller): Promise<string> {
    const { history, shape, plan } = this.#o;
    while (!this.#life.stopped) {
      const step = plan.next().value as PlannedBlockIo;
      const region = `${NVME_DEVICE.name}:lba:${this.#lba(controller, step.slot)}`;
      let op: Op;
      let run: () => Promise<Record<string, unknown>>;
      if (step.op === 'write') {
        const payload = payloadOf(step.payloadSeed, shape.slotBytes);
        payload.copy(controller.data.view);
        op = history.invoke(PROCESS, 'write', { region, digest: digestOf(payload), opcode: 'Write' });
        run = async () => {
          await syncForDevice(controller.data, 0, shape.slotBytes);
          await this.#io(controller, NVME_CMD_WRITE, step.slot);
          return {};
        };
      } else if (step.op === 'read') {
        controller.data.view.fill(0, 0, shape.slotBytes);
        op = history.invoke(PROCESS, 'read', { region, initial: this.#initial![step.slot], opcode: 'Read' });
        run = async () => {
          await syncForDevice(controller.data, 0, shape.slotBytes);
          await this.#io(controller, NVME_CMD_READ, step.slot);
          await syncForCpu(controller.data, 0, shape.slotBytes);
          return { digest: digestOf(controller.data.view.subarray(0, shape.slotBytes)) };
        };
      } else {
        op = history.invoke(PROCESS, 'flush', { nsid: NSID, opcode: 'Flush' });
        run = async () => (await withTimeout(controller.driver.flush(controller.queue, NSID), 'the Flush', COMMAND_DEADLINE_MS), {});
      }
      try {
        history.complete(op, 'ok', { status: 'SUCCESS', ...(await run()) });
      } catch (error) {
        if (error instanceof NvmeStatusError) {
          // The controller completed the command with an error status: it did not happen.
          const status = nvmeStatusName(error.completion.status);
          history.complete(op, 'fail', { status }, status);
          return `${step.op} completed with ${status}`;
        }
        // The controller or its process went away with the command outstanding: it may have run.
        controller.queue.abandon(error instanceof Error ? error : new Error(String(error)));
        history.complete(op, 'info', {}, message(error));
        return `${step.op}: ${message(error)}`;
      }
      await sleep(PACE_MS);
    }
    return 'the campaign ended';
  }

  /** Closes the device (the controller stays as it is, as after a process exit), the IOAS and the buffers, then the process. */
  async #close(controller: Controller): Promise<void> {
    const { session } = controller;
    const steps = async (): Promise<void> => {
      await session.closeFd(controller.deviceFd);
      await controller.space.close();
    };
    await withTimeout(steps(), 'closing the nvme device').catch((error: unknown) => this.#o.log(`nvme worker clean-up: ${message(error)}`));
    controller.close();
    await this.#life.close(session);
  }
}
