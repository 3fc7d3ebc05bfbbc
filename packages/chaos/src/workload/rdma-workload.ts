import { applyDeviceFault, type PlatformClient } from '@p2p/device-faults';
import { type Endpoint, Endpoint as EndpointClass, type MemoryRegion, HOST_IOVA, openMemory, PERF_ACCESS, QpConnection } from '@p2p/perftest';
import { rdma, vfio } from '@p2p/proto';
import { connectPeer } from '@p2p/rpc';
import { decodeCqes, type PackedCompletion, IBV_SEND_SIGNALED } from '@p2p/verbs';
import { pciRegs, vfioUapi } from '@p2p/vfio-pci';
import type { Deployment } from '../driver/driver';
import type { HistoryRecorder, Op } from '../history';
import { digestOf, payloadOf, type PlannedRequest, type PlannedRevoke, type QueueName, type WorkloadShape } from '../plan/workload-plan';
import { readBarMemory } from './bar-memory';
import type { DeviceLock } from './device-lock';
import type { AccelOwner } from './dma-workload';
import { message, Nap, withTimeout } from './step';

/** The accelerator whose BAR2 the workload exports, as pci-emu's default topology places it (beside nic1). */
export const WORKLOAD_DEVICE = { name: 'accel0', bdf: '0000:07:00.0', bar: 2 } as const;
const BAR_NAME = `${WORKLOAD_DEVICE.name}:bar${WORKLOAD_DEVICE.bar}`;
/** A work request with no completion after this long: the worker has lost track of it. */
const COMPLETION_DEADLINE_MS = 5000;
/** Between posts on one queue: enough traffic to meet every fault, little enough to leave two cores to the services. */
const PACE_MS = 5;

export interface WorkloadOptions {
  readonly deployment: Deployment;
  readonly history: HistoryRecorder;
  readonly platform: PlatformClient;
  readonly shape: WorkloadShape;
  readonly plans: Record<QueueName, Iterator<PlannedRequest>>;
  readonly revokes: readonly PlannedRevoke[];
  readonly deviceLock: DeviceLock;
  /** Bumps when the BAR's memory is lost (pci-emu died): regions of an older generation are other regions. */
  readonly barGeneration: () => number;
  readonly log: (line: string) => void;
}

function statusName(status: number): string {
  return rdma.wcStatusToJSON(status).replace(/^WC_STATUS_/, '');
}

/** Host memory of a host: a system-heap dma-buf registered with its NIC; its CPU reaches it through the registry (CpuRead/CpuWrite). */
interface HostMemory {
  readonly fd: number;
  readonly region: MemoryRegion;
}

async function hostMemory(endpoint: Endpoint, length: number): Promise<HostMemory> {
  const { fd } = await endpoint.session.heapAllocate(length);
  endpoint.onClose(`close heap buffer fd ${fd}`, () => endpoint.session.closeFd(fd));
  const mr = await endpoint.ctx.regMr(endpoint.pd, { heapFd: fd, length, iova: HOST_IOVA, access: PERF_ACCESS });
  endpoint.onClose(`deregister MR ${mr.mrHandle}`, () => endpoint.ctx.deregMr(mr.mrHandle));
  return { fd, region: { lkey: mr.lkey, rkey: mr.rkey, iova: HOST_IOVA, length } };
}

/** A work request in flight: its ops in the history, and where its local bytes are. */
interface Pending {
  readonly wrId: bigint;
  readonly post: Op;
  readonly data: Op;
  readonly opcode: PlannedRequest['opcode'];
  readonly stagingOffset: number;
  readonly postedAt: number;
}

/**
 * One incarnation of the workload: host X (nic1) with accel0's BAR exported
 * by vfio-pci and registered as a dma-buf MR, host Y (nic0) with its
 * memory, and an RC QP pair per stream. A fault that breaks any of it ends
 * the incarnation; the next one starts from new processes.
 */
class Incarnation {
  broken: string | undefined;
  readonly #nap = new Nap();
  #ended: (reason: string) => void = () => undefined;
  /** Resolves with the reason once the incarnation breaks. */
  readonly ending = new Promise<string>((resolve) => (this.#ended = resolve));
  /** The DMA worker's hold on host X: the incarnation tears down once each is released. */
  readonly borrowers: Promise<void>[] = [];

  constructor(
    readonly number: number,
    /** The BAR's generation when this incarnation mapped it: its regions' names. */
    readonly barGeneration: number,
    /** Each BAR slot's digest before the campaign wrote into this generation of it. */
    readonly barInitial: readonly string[],
    readonly x: Endpoint,
    readonly y: Endpoint,
    readonly deviceFd: number,
    readonly hostX: HostMemory,
    readonly hostY: HostMemory,
    readonly connections: Record<QueueName, QpConnection>,
  ) {}

  break(reason: string): void {
    this.broken ??= reason;
    this.#ended(this.broken);
    this.#nap.wake();
  }

  /** Resolves at the next completion, break, or after `ms`. */
  nap(ms: number): Promise<void> {
    return this.#nap.nap(ms);
  }

  wake(): void {
    this.#nap.wake();
  }
}

/**
 * The campaign's workload: RDMA WRITE and READ streams between two model
 * processes, host memory and accel0's BAR, every work request in the
 * history (post, and write or read of a region), and the BAR's owner
 * revoking it now and then. After a fault it starts again: new processes,
 * new QPs, everything registered again.
 */
export class RdmaWorkload {
  readonly #o: WorkloadOptions;
  #incarnation: Incarnation | undefined;
  #count = 0;
  #nextWrId = 1n;
  /** Endpoints a clean-up could not close while the deployment was hurt: closed again at the end. */
  readonly #unclosed: Endpoint[] = [];
  #stopped = false;
  readonly #initial = new Map<number, readonly string[]>();

  constructor(options: WorkloadOptions) {
    this.#o = options;
  }

  /** Runs until stop(); the owner's revokes at their planned times (ms after `startedAt`). */
  async run(startedAt: number): Promise<void> {
    await Promise.all([this.#streams(), this.#revoker(startedAt)]);
  }

  stop(): void {
    this.#stopped = true;
    this.#incarnation?.break('the campaign ended');
  }

  /**
   * Host X of the live incarnation, for the DMA worker to drive accel0 from
   * (vfio-pci lets one process own a device); waits for one, undefined once
   * the campaign ended. The incarnation waits for release() before it closes.
   */
  async borrowAccelOwner(): Promise<AccelOwner | undefined> {
    while (!this.#stopped) {
      const incarnation = this.#incarnation;
      if (incarnation !== undefined && incarnation.broken === undefined) {
        let release!: () => void;
        incarnation.borrowers.push(new Promise<void>((resolve) => (release = resolve)));
        return { session: incarnation.x.session, ending: incarnation.ending, release };
      }
      await new Promise((resolve) => setTimeout(resolve, 100));
    }
    return undefined;
  }

  /** Closes what clean-ups left open, once the deployment is whole again. */
  async closeLeftovers(): Promise<void> {
    for (const endpoint of this.#unclosed.splice(0)) await withTimeout(endpoint.close(), 'closing a left-over endpoint').catch((error: unknown) => this.#o.log(`left-over endpoint: ${message(error)}`));
  }

  async #streams(): Promise<void> {
    while (!this.#stopped) {
      const incarnation = await this.#setUp().catch((error: unknown) => {
        this.#o.log(`workload set-up failed: ${message(error)}`);
        return undefined;
      });
      if (incarnation === undefined) {
        await new Promise((resolve) => setTimeout(resolve, 250));
        continue;
      }
      this.#incarnation = incarnation;
      // A stop() that came while the set-up ran found no incarnation to break.
      if (this.#stopped) incarnation.break('the campaign ended');
      await Promise.all((['bar', 'host'] as const).map((queue) => this.#queue(incarnation, queue)));
      this.#incarnation = undefined;
      if (!this.#stopped) this.#o.log(`workload incarnation ${incarnation.number} ended: ${incarnation.broken}`);
      await withTimeout(Promise.all(incarnation.borrowers), 'the dma worker handing host X back').catch((error: unknown) => this.#o.log(message(error)));
      await this.#tearDown(incarnation);
    }
  }

  async #setUp(): Promise<Incarnation> {
    const { deployment, shape } = this.#o;
    const number = ++this.#count;
    const open = (name: string, nic: string): Promise<Endpoint> =>
      withTimeout(EndpointClass.open({ name, registry: deployment.registry, nic, shmDir: deployment.shmDir, tls: deployment.tls }), `opening ${name}`);
    const y = await open(`chaos-host-y-${number}`, deployment.nics[0]);
    let x: Endpoint | undefined;
    try {
      x = await open(`chaos-host-x-${number}`, deployment.nics[1]);
      const endpointX = x;
      const generation = this.#o.barGeneration();
      const setUp = async (): Promise<Incarnation> => {
        // An owner whose revoke could not set Memory Space again left the BAR off: the platform sets it, unless a fault holds the device.
        await this.#o.deviceLock.hold(async () => {
          const { value } = await this.#o.platform.configRead({ bdf: WORKLOAD_DEVICE.bdf, offset: pciRegs.PCI_COMMAND, width: 2 });
          if ((value & pciRegs.PCI_COMMAND_MEMORY) === 0) await applyDeviceFault(this.#o.platform, WORKLOAD_DEVICE.bdf, 'mem-on');
        });
        const bar = await openMemory(endpointX, { kind: 'bar', ...WORKLOAD_DEVICE }, { address: deployment.vfioPci, adminToken: deployment.adminToken, tls: deployment.tls });
        const barRegion = await bar.register(shape.slots * shape.slotBytes);
        const hostY = await hostMemory(y, (shape.depth + shape.slots) * shape.slotBytes);
        const hostX = await hostMemory(endpointX, shape.depth * shape.slotBytes);
        const barQueue = await QpConnection.connect(y, endpointX, hostY.region, barRegion);
        y.onClose('destroy the bar stream QPs', () => barQueue.close());
        const hostQueue = await QpConnection.connect(endpointX, y, hostX.region, hostY.region);
        endpointX.onClose('destroy the host stream QPs', () => hostQueue.close());
        return new Incarnation(number, generation, await this.#barInitial(generation), endpointX, y, bar.deviceFd!, hostX, hostY, { bar: barQueue, host: hostQueue });
      };
      return await withTimeout(setUp(), 'setting up the streams');
    } catch (error) {
      for (const endpoint of [x, y]) if (endpoint !== undefined) await this.#close(endpoint);
      throw error;
    }
  }

  /** What each slot of the BAR holds before the workload's first write into this generation of it (the device's power-on pattern). */
  async #barInitial(generation: number): Promise<readonly string[]> {
    let initial = this.#initial.get(generation);
    if (initial === undefined) {
      const { shape, platform, deployment } = this.#o;
      const bytes = await readBarMemory(platform, deployment.segments, WORKLOAD_DEVICE.bdf, WORKLOAD_DEVICE.bar, 0, shape.slots * shape.slotBytes);
      initial = Array.from({ length: shape.slots }, (_, slot) => digestOf(bytes.subarray(slot * shape.slotBytes, (slot + 1) * shape.slotBytes)));
      this.#initial.set(generation, initial);
    }
    return initial;
  }

  async #tearDown(incarnation: Incarnation): Promise<void> {
    await this.#close(incarnation.x);
    await this.#close(incarnation.y);
  }

  async #close(endpoint: Endpoint): Promise<void> {
    await withTimeout(endpoint.close(), `closing ${endpoint.session.name}`).catch(() => this.#unclosed.push(endpoint));
  }

  /** One stream: posts the plan's requests, `depth` in flight, and completes each from its CQE. */
  async #queue(incarnation: Incarnation, queue: QueueName): Promise<void> {
    const { history, shape, plans } = this.#o;
    const connection = incarnation.connections[queue];
    const requester = queue === 'bar' ? incarnation.y : incarnation.x;
    const local = queue === 'bar' ? incarnation.hostY : incarnation.hostX;
    const process = queue === 'bar' ? 'host-y' : 'host-x';
    const queueName = `${queue}#${incarnation.number}`;
    const pending: Pending[] = [];
    // A fresh heap buffer is zeroed, as the system heap's pages are.
    const zeroDigest = digestOf(Buffer.alloc(shape.slotBytes));
    const finishing: Promise<void>[] = [];
    // Staging slots in post order: with `depth` in flight and an RC QP's completions in order, a slot's last
    // request has completed when it comes round again, but its bytes may still be on their way to the
    // history (a READ's cpuRead): a slot is reused only once they are.
    const staged: Promise<void>[] = [];
    let nextStaging = 0;

    const regionOf = (slot: number): string =>
      queue === 'bar' ? `${BAR_NAME}[${slot}]@g${incarnation.barGeneration}` : `host-y[${slot}]@${incarnation.number}`;
    const complete = (wc: PackedCompletion): void => {
      const index = pending.findIndex((p) => p.wrId === wc.wrId);
      if (index < 0) return;
      const [p] = pending.splice(index, 1) as [Pending];
      const status = statusName(wc.status);
      if (wc.status !== rdma.WcStatus.WC_STATUS_SUCCESS) {
        history.complete(p.post, 'fail', { status }, status);
        // A READ that failed landed nothing here. A WRITE that failed, even one flushed, may have run at the
        // responder: the QP flushes every outstanding WR when it errors, including requests already on the wire
        // whose answers never came (a peer NIC that died after executing them).
        if (p.opcode === 'RDMA_READ') history.complete(p.data, 'fail', { status }, status);
        else history.complete(p.data, 'info', { status }, status);
        incarnation.break(`wr ${wc.wrId} completed with ${status}`);
        return;
      }
      history.complete(p.post, 'ok', { status });
      if (p.opcode === 'RDMA_WRITE') {
        history.complete(p.data, 'ok');
        return;
      }
      // The READ's bytes, as they arrived in local memory.
      const read = withTimeout(requester.session.cpuRead(local.fd, p.stagingOffset, shape.slotBytes), "reading a READ's bytes").then(
        (bytes) => void history.complete(p.data, 'ok', { digest: digestOf(bytes) }),
        (error: unknown) => void history.complete(p.data, 'info', {}, message(error)),
      );
      staged[p.stagingOffset / shape.slotBytes] = read;
      finishing.push(read);
    };
    connection.completions.onBatch = (packed) => {
      if (packed.length === 0) incarnation.break(connection.completions.ended ?? 'the completion watch ended');
      for (const wc of decodeCqes(packed)) complete(wc);
      incarnation.wake();
    };

    while (!incarnation.broken) {
      if (pending.length >= shape.depth) {
        await incarnation.nap(100);
        const oldest = pending[0];
        // No completion for this long: a NIC or its peer stopped answering.
        if (oldest !== undefined && Date.now() - oldest.postedAt > COMPLETION_DEADLINE_MS) incarnation.break(`wr ${oldest.wrId}: no completion within ${COMPLETION_DEADLINE_MS} ms`);
        continue;
      }
      const step = plans[queue].next().value as PlannedRequest;
      const wrId = this.#nextWrId++;
      const stagingSlot = nextStaging++ % shape.depth;
      await staged[stagingSlot];
      const stagingOffset = stagingSlot * shape.slotBytes;
      const region = regionOf(step.slot);
      const remoteOffset = (queue === 'bar' ? 0 : shape.depth * shape.slotBytes) + step.slot * shape.slotBytes;
      let payloadDigest: string | undefined;
      if (step.opcode === 'RDMA_WRITE') {
        const payload = payloadOf(step.payloadSeed, shape.slotBytes);
        payloadDigest = digestOf(payload);
        try {
          await withTimeout(requester.session.cpuWrite(local.fd, stagingOffset, payload), 'staging a WRITE');
        } catch (error) {
          incarnation.break(`staging a WRITE: ${message(error)}`);
          break;
        }
      }
      const post = history.invoke(process, 'post', { queue: queueName, wrId: Number(wrId), opcode: step.opcode, length: shape.slotBytes, region, ...(payloadDigest === undefined ? {} : { digest: payloadDigest }) });
      const data =
        step.opcode === 'RDMA_WRITE'
          ? history.invoke(process, 'write', { region, digest: payloadDigest })
          : history.invoke(process, 'read', { region, initial: queue === 'bar' ? incarnation.barInitial[step.slot] : zeroDigest });
      const entry: Pending = { wrId, post, data, opcode: step.opcode, stagingOffset, postedAt: Date.now() };
      pending.push(entry);
      try {
        // A post that hangs (a NIC stopped mid-call) is indeterminate, as one that fails.
        await withTimeout(requester.ctx.postSend(connection.qpNum, [
          {
            wrId,
            opcode: step.opcode === 'RDMA_WRITE' ? rdma.WrOpcode.WR_OPCODE_RDMA_WRITE : rdma.WrOpcode.WR_OPCODE_RDMA_READ,
            sgList: [{ addr: BigInt(connection.local.iova + stagingOffset), length: shape.slotBytes, lkey: connection.local.lkey }],
            sendFlags: IBV_SEND_SIGNALED,
            remoteAddr: BigInt(connection.remote.iova + remoteOffset),
            rkey: connection.remote.rkey,
            immData: 0,
            compareAdd: 0n,
            swap: 0n,
          },
        ]), 'ibv_post_send');
      } catch (error) {
        // The call failed, but whether the NIC took the request is not known: it may still run.
        const at = pending.indexOf(entry);
        if (at >= 0) {
          pending.splice(at, 1);
          history.complete(post, 'info', {}, message(error));
          history.complete(data, 'info', {}, message(error));
        }
        incarnation.break(`ibv_post_send: ${message(error)}`);
        break;
      }
      await new Promise((resolve) => setTimeout(resolve, PACE_MS));
    }
    // What is still in flight: its flush (or other) completions come soon, or the worker loses track of it.
    const deadline = Date.now() + 3000;
    while (pending.length > 0 && Date.now() < deadline) await incarnation.nap(100);
    connection.completions.onBatch = () => undefined;
    for (const p of pending.splice(0)) {
      history.complete(p.post, 'info', {}, `lost track: ${incarnation.broken}`);
      history.complete(p.data, 'info', {}, `lost track: ${incarnation.broken}`);
    }
    await Promise.all(finishing);
  }

  /**
   * The BAR's owner (host X, holding accel0's vfio device fd) clears Memory
   * Space through vfio-pci (the revoke of every dma-buf of the BAR,
   * vfio_pci_dma_buf_move()), reads the BAR right after the config write
   * returned, holds, reads it again, and sets Memory Space again.
   */
  async #revoker(startedAt: number): Promise<void> {
    const { history, deployment, platform, shape, deviceLock } = this.#o;
    for (const planned of this.#o.revokes) {
      const wait = startedAt + planned.atMs - Date.now();
      if (wait > 0) await new Promise((resolve) => setTimeout(resolve, wait));
      if (this.#stopped) return;
      const incarnation = this.#incarnation;
      if (incarnation === undefined || incarnation.broken !== undefined) continue;
      const owner = connectPeer(vfio.VfioPciServiceDefinition, deployment.vfioPci, { name: 'vfio-pci', tls: deployment.tls, token: incarnation.x.session.credential });
      const { pid } = incarnation.x.session;
      const config = { pid, deviceFd: incarnation.deviceFd, index: vfioUapi.VFIO_PCI_CONFIG_REGION_INDEX, offset: BigInt(pciRegs.PCI_COMMAND) };
      const writeCommand = (value: number): Promise<unknown> => {
        const data = Buffer.alloc(2);
        data.writeUInt16LE(value);
        return withTimeout(owner.client.regionWrite({ ...config, data }), 'a PCI_COMMAND write');
      };
      const barDigest = async (): Promise<string> =>
        digestOf(await withTimeout(readBarMemory(platform, deployment.segments, WORKLOAD_DEVICE.bdf, WORKLOAD_DEVICE.bar, 0, shape.slots * shape.slotBytes), 'reading the BAR'));
      await deviceLock
        .hold(async () => {
          const command = Buffer.from((await withTimeout(owner.client.regionRead({ ...config, count: 2 }), 'reading PCI_COMMAND')).data).readUInt16LE(0);
          const revoke = history.invoke('owner', 'revoke', { bar: BAR_NAME, holdMs: planned.holdMs });
          try {
            await writeCommand(command & ~pciRegs.PCI_COMMAND_MEMORY);
          } catch (error) {
            history.complete(revoke, 'info', {}, message(error));
            return;
          }
          history.complete(revoke, 'ok', { digest: await barDigest() });
          await new Promise((resolve) => setTimeout(resolve, planned.holdMs));
          const unrevoke = history.invoke('owner', 'unrevoke', { bar: BAR_NAME, digest: await barDigest() });
          try {
            await writeCommand(command | pciRegs.PCI_COMMAND_MEMORY);
            history.complete(unrevoke, 'ok');
          } catch (error) {
            history.complete(unrevoke, 'info', {}, message(error));
          }
        })
        .catch((error: unknown) => this.#o.log(`revoke skipped: ${message(error)}`))
        .finally(() => owner.close());
    }
  }
}
