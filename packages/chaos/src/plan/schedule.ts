import type { DeviceFault } from '@p2p/device-faults';
import { Prng } from './prng';

/** The fault kinds a campaign rotates through (`--faults`). */
export const FAULT_KINDS = ['kill', 'stop', 'partition', 'device'] as const;
export type FaultKind = (typeof FAULT_KINDS)[number];

export function isFaultKind(name: string): name is FaultKind {
  return (FAULT_KINDS as readonly string[]).includes(name);
}

/** The services a process fault (kill, stop, partition) is aimed at, by the names `p2p fault` takes. */
export const SERVICES = ['pci-emu', 'vfio-pci', 'dmabuf-registry', 'rdma-nic-0', 'rdma-nic-1'] as const;
export type ServiceName = (typeof SERVICES)[number];

/**
 * The device faults the nemesis rotates through, each with the fault that
 * heals it (after FLR the function decodes again only once Memory Space is
 * set, as a driver re-enables it after pcie_flr()).
 */
export const DEVICE_FAULT_HEALS: readonly { readonly fault: DeviceFault; readonly heal: readonly DeviceFault[] }[] = [
  { fault: 'mem-off', heal: ['mem-on'] },
  { fault: 'flr', heal: ['mem-on'] },
  { fault: 'd3', heal: ['d0', 'mem-on'] },
  { fault: 'unplug', heal: ['replug', 'mem-on'] },
];

/** One fault of the schedule: when it starts (ms after the campaign did), what and whom it hits, how long it holds. */
export interface ScheduledFault {
  readonly atMs: number;
  readonly kind: FaultKind;
  /** A service for kill, stop and partition; the device (accel0) for a device fault. */
  readonly target: string;
  /** For a device fault: which one, and the faults that undo it. */
  readonly device?: (typeof DEVICE_FAULT_HEALS)[number];
  readonly holdMs: number;
}

export interface ScheduleOptions {
  readonly seed: number;
  readonly durationMs: number;
  readonly intervalMs: number;
  readonly faultDurationMs: number;
  readonly kinds: readonly FaultKind[];
  /** The device a device fault hits (the workload's accelerator). */
  readonly device: string;
}

/**
 * The nemesis's plan: a fault every `intervalMs` (the first one interval in,
 * none that would not heal before the end), the kinds in the order given,
 * rotating; process faults aimed at each service in turn (the order
 * shuffled by the seed), device faults rotating through DEVICE_FAULT_HEALS.
 * A function of its options alone: the same seed, the same schedule.
 */
export function nemesisSchedule(options: ScheduleOptions): ScheduledFault[] {
  const services = new Prng(options.seed ^ 0x6e656d65).shuffle([...SERVICES]);
  const faults: ScheduledFault[] = [];
  let processFaults = 0;
  let deviceFaults = 0;
  for (let i = 0, atMs = options.intervalMs; atMs + options.faultDurationMs < options.durationMs; i++, atMs += options.intervalMs) {
    const kind = options.kinds[i % options.kinds.length]!;
    if (kind === 'device') {
      faults.push({ atMs, kind, target: options.device, device: DEVICE_FAULT_HEALS[deviceFaults++ % DEVICE_FAULT_HEALS.length]!, holdMs: options.faultDurationMs });
    } else {
      faults.push({ atMs, kind, target: services[processFaults++ % services.length]!, holdMs: options.faultDurationMs });
    }
  }
  return faults;
}
