import { applyDeviceFault, type PlatformClient } from '@p2p/device-faults';
import { pci } from '@p2p/proto';
import { connectPeer } from '@p2p/rpc';
import type { Deployment, Driver } from './driver/driver';
import { HistoryRecorder, NEMESIS, type Op } from './history';
import { leftOver } from './leak-check';
import { type FaultKind, nemesisSchedule, type ScheduledFault, type ServiceName } from './plan/schedule';
import { blockIoPlan, copyPlan, DEFAULT_SHAPE, type PlannedRequest, type QueueName, requestPlan, revokePlan, type WorkloadName, WORKLOADS } from './plan/workload-plan';
import { analyze, type CampaignResult } from './report';
import { DeviceLock } from './workload/device-lock';
import { DmaWorkload } from './workload/dma-workload';
import { NvmeWorkload } from './workload/nvme-workload';
import { RdmaWorkload, WORKLOAD_DEVICE } from './workload/rdma-workload';

/** Debug plants: lies told to the campaign's own checkers, to show they catch them end to end. */
export const PLANTS = ['lost-completion'] as const;
export type Plant = (typeof PLANTS)[number];

export interface CampaignOptions {
  readonly driver: Driver;
  readonly seed: number;
  readonly durationMs: number;
  readonly intervalMs: number;
  readonly faultDurationMs: number;
  readonly kinds: readonly FaultKind[];
  /** The workloads to run (`--workload`); default all: RDMA streams, DMA-engine copies, NVMe I/O. */
  readonly workloads?: readonly WorkloadName[];
  readonly plant?: Plant;
  /** Progress lines (faults, the workload starting over). */
  readonly log?: (line: string) => void;
  /** The deployment is up: e.g. to start watching its events. */
  readonly onDeployment?: (deployment: Deployment) => void;
}

/** A fault as it happened, on the wall clock (for the trace's nemesis track). */
export interface FaultEvent {
  readonly kind: FaultKind;
  readonly target: string;
  readonly detail: string;
  readonly startUnixMs: number;
  readonly healedUnixMs: number | undefined;
}

export interface CampaignRun {
  readonly ops: readonly Op[];
  readonly result: CampaignResult;
  readonly faults: readonly FaultEvent[];
  readonly partitionMethod: string;
}

/**
 * Drops the first successful completion of a work request from the history
 * (and renumbers what follows), as a worker that lost a CQE would: the
 * exactly-once checker must report that request as never completed.
 */
export function plantLostCompletion(ops: readonly Op[]): Op[] {
  const victim = ops.find((op) => op.f === 'post' && op.type === 'ok');
  if (victim === undefined) return [...ops];
  const renumber = (index: number): number => (index > victim.index ? index - 1 : index);
  return ops.filter((op) => op !== victim).map((op) => ({ ...op, index: renumber(op.index), ...(op.invoke === undefined ? {} : { invoke: renumber(op.invoke) }) }));
}

function message(error: unknown): string {
  return (error instanceof Error ? error.message : String(error)).split('\n')[0]!;
}

/**
 * One campaign: brings the deployment up, runs the seeded workload while
 * the nemesis works through its schedule, stops the workload, closes
 * everything, checks what was left, and analyzes the history.
 */
export async function runCampaign(options: CampaignOptions): Promise<CampaignRun> {
  const log = options.log ?? ((): void => undefined);
  const { driver } = options;
  const deployment = await driver.start();
  const platform = connectPeer(pci.PciEmuServiceDefinition, deployment.pciEmu, { name: 'pci-emu', token: deployment.adminToken, tls: deployment.tls });
  try {
    options.onDeployment?.(deployment);
    const history = new HistoryRecorder();
    const deviceLock = new DeviceLock();
    let barGeneration = 0;
    const shape = DEFAULT_SHAPE;
    const plans: Record<QueueName, Iterator<PlannedRequest>> = { bar: requestPlan(options.seed, 'bar', shape), host: requestPlan(options.seed, 'host', shape) };
    const selected = options.workloads ?? WORKLOADS;
    const rdma = !selected.includes('rdma')
      ? undefined
      : new RdmaWorkload({
          deployment,
          history,
          platform: platform.client,
          shape,
          plans,
          revokes: revokePlan(options.seed, options.durationMs),
          deviceLock,
          barGeneration: () => barGeneration,
          log,
        });
    const dma = !selected.includes('dma')
      ? undefined
      : new DmaWorkload({
          deployment,
          history,
          shape,
          plan: copyPlan(options.seed, shape),
          // accel0 has one owner: host X while the RDMA workload runs.
          ...(rdma === undefined ? {} : { borrowOwner: () => rdma.borrowAccelOwner() }),
          deviceLock,
          pciGeneration: () => barGeneration,
          log,
        });
    const nvme = selected.includes('nvme') ? new NvmeWorkload({ deployment, history, shape, plan: blockIoPlan(options.seed, shape), log }) : undefined;
    const schedule = nemesisSchedule({ seed: options.seed, durationMs: options.durationMs, intervalMs: options.intervalMs, faultDurationMs: options.faultDurationMs, kinds: options.kinds, device: WORKLOAD_DEVICE.name });
    const startedAt = Date.now();
    const running = Promise.all([rdma?.run(startedAt), dma?.run(), nvme?.run()]);
    const faults: FaultEvent[] = [];
    for (const fault of schedule) {
      const wait = startedAt + fault.atMs - Date.now();
      if (wait > 0) await new Promise((resolve) => setTimeout(resolve, wait));
      faults.push(
        await inflict(fault, { driver, platform: platform.client, history, deviceLock, log, onBarLost: () => barGeneration++ }),
      );
    }
    const rest = startedAt + options.durationMs - Date.now();
    if (rest > 0) await new Promise((resolve) => setTimeout(resolve, rest));
    for (const workload of [rdma, dma, nvme]) workload?.stop();
    await running;
    await driver.waitServing(30_000).catch((error: unknown) => log(`at the end: ${message(error)}`));
    for (const workload of [dma, rdma, nvme]) await workload?.closeLeftovers();
    // The NICs and vfio-pci release what a closed process held as their sessions hear of it.
    await new Promise((resolve) => setTimeout(resolve, 500));
    const check = history.invoke('checker', 'leak-check');
    try {
      history.complete(check, 'ok', { ...(await leftOver(deployment, platform.client, WORKLOAD_DEVICE)) });
    } catch (error) {
      history.complete(check, 'info', {}, message(error));
    }
    const ops = options.plant === 'lost-completion' ? plantLostCompletion(history.ops) : [...history.ops];
    return { ops, result: analyze(ops), faults, partitionMethod: driver.partitionMethod };
  } finally {
    platform.close();
    await driver.stop();
  }
}

interface NemesisContext {
  readonly driver: Driver;
  readonly platform: PlatformClient;
  readonly history: HistoryRecorder;
  readonly deviceLock: DeviceLock;
  readonly log: (line: string) => void;
  /** pci-emu died: the BAR's memory went with it. */
  readonly onBarLost: () => void;
}

/** One fault: recorded as a nemesis invoke when it starts, completed ok when healed (info if the nemesis could not tell). */
async function inflict(fault: ScheduledFault, context: NemesisContext): Promise<FaultEvent> {
  const { driver, history, log } = context;
  const detail = fault.device?.fault ?? '';
  const startUnixMs = Date.now();
  const op = history.invoke(NEMESIS, fault.kind, { kind: fault.kind, service: fault.target, ...(detail === '' ? {} : { fault: detail }), holdMs: fault.holdMs });
  log(`nemesis: ${fault.kind} ${fault.target}${detail === '' ? '' : ` (${detail})`} for ${fault.holdMs} ms`);
  const hold = (): Promise<void> => new Promise((resolve) => setTimeout(resolve, fault.holdMs));
  const service = fault.target as ServiceName;
  try {
    switch (fault.kind) {
      case 'kill':
        // No revoke while a service is down: its digests would read a BAR the fault, not DMA, may have changed.
        await context.deviceLock.hold(async () => {
          await driver.kill(service);
          if (service === 'pci-emu') context.onBarLost();
          await hold();
          await driver.revive(service);
        });
        break;
      case 'stop':
        await driver.pause(service);
        await hold();
        await driver.resume(service);
        break;
      case 'partition':
        await driver.partition(service);
        await hold();
        await driver.heal(service);
        break;
      case 'device':
        await context.deviceLock.hold(async () => {
          const bdf = WORKLOAD_DEVICE.bdf;
          await applyDeviceFault(context.platform, bdf, fault.device!.fault);
          await hold();
          for (const heal of fault.device!.heal) await applyDeviceFault(context.platform, bdf, heal);
        });
        break;
    }
    await driver.waitServing(30_000);
    history.complete(op, 'ok');
  } catch (error) {
    log(`nemesis: ${fault.kind} ${fault.target}: ${message(error)}`);
    history.complete(op, 'info', {}, message(error));
  }
  return { kind: fault.kind, target: fault.target, detail, startUnixMs, healedUnixMs: Date.now() };
}
