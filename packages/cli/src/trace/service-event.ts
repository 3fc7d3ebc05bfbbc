import { dmabuf, pci } from '@p2p/proto';
import { hex } from '../format';

/** A field of an event as a watch prints it: addresses and 64-bit values as 0x hex. */
export type EventField = string | number | boolean | readonly string[];

interface EventBase {
  /** The service that reported it: pci-emu, dmabuf-registry. */
  readonly service: string;
  /** The service's own order: a gap means the stream missed events. */
  readonly sequence: bigint;
  /**
   * Wall clock, nanoseconds since the epoch: the only clock that compares
   * across services (each process's monotonic clock starts elsewhere).
   */
  readonly unixNanos: bigint;
  /** The service's monotonic clock: exact spacing between its own events. */
  readonly monotonicNs: bigint;
}

/** A pci-emu event: `type` is the oneof case in kebab-case (decode-changed, iommu-fault, nvme-command...). */
export interface PlatformEvent extends EventBase {
  readonly source: 'pci';
  /** The function; empty for a domain event. */
  readonly bdf: string;
  readonly type: string;
  readonly fields: Readonly<Record<string, EventField>>;
}

/** A dmabuf-registry event: `kind` in lower case (export, attach, move_notify, ack, fence, move_done...). */
export interface RegistryEvent extends EventBase {
  readonly source: 'registry';
  readonly kind: string;
  readonly bufferId: number;
  readonly attachmentId: number;
  readonly pid: number;
  /** The sequence of the REVOKE or UNREVOKE this event follows from; 0 outside a move. */
  readonly moveId: number;
  readonly notificationId: number;
  readonly detail: string;
}

export type ServiceEvent = PlatformEvent | RegistryEvent;

type PciCase = NonNullable<pci.WatchEventsResponse['event']>['$case'];

/** Each event message's toJSON, which names its enums. */
const PCI_MESSAGES: Record<PciCase, { toJSON(message: never): unknown }> = {
  decodeChanged: pci.DecodeChanged,
  reset: pci.Reset,
  powerChanged: pci.PowerChanged,
  unplugged: pci.Unplugged,
  replugged: pci.Replugged,
  iommuFault: pci.IommuFault,
  iommuMapped: pci.IommuMapped,
  iommuUnmapped: pci.IommuUnmapped,
  dmaCompleted: pci.DmaCompleted,
  barWritten: pci.BarWritten,
  nvmeCommand: pci.NvmeCommand,
  nvmeDoorbell: pci.NvmeDoorbell,
  nvmeQueueCreated: pci.NvmeQueueCreated,
  nvmeQueueDeleted: pci.NvmeQueueDeleted,
  nvmeStateChanged: pci.NvmeStateChanged,
};

/** DECODE_REASON_COMMAND_WRITE -> COMMAND_WRITE: the enum's prefix says nothing beside its field's name. */
const ENUM_PREFIX = /^(DECODE_REASON|RESET_KIND|POWER_STATE|IOMMU_FAULT_REASON|DMA_STATUS|DMA_ERROR|BAR_WRITE_PATH|NVME_QUEUE_TYPE|NVME_QUEUE_LOCATION|NVME_CONTROLLER_STATE)_/;

function kebab(name: string): string {
  return name.replace(/[A-Z]/g, (c) => `-${c.toLowerCase()}`);
}

/** A pci-emu WatchEvents response as a watch shows it: 64-bit values in hex, enums by name. */
export function fromPciEvent(service: string, response: pci.WatchEventsResponse): PlatformEvent {
  const base = { service, sequence: response.sequence, unixNanos: response.unixNanos, monotonicNs: response.monotonicNs };
  if (response.event === undefined) return { ...base, source: 'pci', bdf: response.bdf, type: 'unknown', fields: {} };
  const { $case, value } = response.event;
  const named = PCI_MESSAGES[$case].toJSON(value as never) as Record<string, unknown>;
  const fields: Record<string, EventField> = {};
  for (const [key, raw] of Object.entries(value as unknown as Record<string, unknown>)) {
    if (typeof raw === 'bigint') fields[key] = hex(raw);
    else if (typeof raw === 'number' && typeof named[key] === 'string') fields[key] = (named[key] as string).replace(ENUM_PREFIX, '');
    else if (typeof raw === 'number' || typeof raw === 'boolean' || typeof raw === 'string') fields[key] = raw;
    else if (Array.isArray(raw)) fields[key] = raw.map(String);
  }
  return { ...base, source: 'pci', bdf: response.bdf, type: kebab($case), fields };
}

/** A dmabuf-registry WatchEvents response. */
export function fromRegistryEvent(service: string, response: dmabuf.WatchEventsResponse): RegistryEvent {
  return {
    service,
    source: 'registry',
    sequence: response.sequence,
    unixNanos: response.unixNanos,
    monotonicNs: response.monotonicNs,
    kind: dmabuf.eventKindToJSON(response.kind).replace(/^EVENT_KIND_/, '').toLowerCase(),
    bufferId: Number(response.bufferId),
    attachmentId: Number(response.attachmentId),
    pid: response.pid,
    moveId: Number(response.moveId),
    notificationId: Number(response.notificationId),
    detail: response.detail,
  };
}

/** The wall-clock time as ISO 8601 with microseconds, in UTC: 2025-01-02T03:04:05.123456Z. */
export function isoMicros(unixNanos: bigint): string {
  const millis = unixNanos / 1_000_000n;
  const micros = (unixNanos / 1000n) % 1000n;
  return new Date(Number(millis)).toISOString().replace(/Z$/, `${micros.toString().padStart(3, '0')}Z`);
}

/** The ids that name what an event is about, nonzero ones only. */
function registryIds(event: RegistryEvent): Record<string, number> {
  const ids: Record<string, number> = {};
  if (event.bufferId !== 0) ids.buffer = event.bufferId;
  if (event.attachmentId !== 0) ids.attachment = event.attachmentId;
  if (event.pid !== 0) ids.pid = event.pid;
  if (event.moveId !== 0) ids.move = event.moveId;
  if (event.notificationId !== 0) ids.notification = event.notificationId;
  return ids;
}

/** One JSON line of `p2p watch --json`. */
export function eventJson(event: ServiceEvent): Record<string, unknown> {
  const head = { time: isoMicros(event.unixNanos), service: event.service, sequence: Number(event.sequence), monotonicNs: event.monotonicNs.toString() };
  if (event.source === 'pci') return { ...head, event: event.type, bdf: event.bdf, ...event.fields };
  return { ...head, event: event.kind, ...registryIds(event), detail: event.detail };
}

function fieldText(value: EventField): string {
  return Array.isArray(value) ? `[${value.join(',')}]` : String(value);
}

/** One line of `p2p watch`: time, service, event, its ids. */
export function eventLine(event: ServiceEvent): string {
  const head = `${isoMicros(event.unixNanos)} ${event.service.padEnd(15)} #${event.sequence}`;
  if (event.source === 'pci') {
    const fields = Object.entries(event.fields).map(([key, value]) => `${key}=${fieldText(value)}`);
    return [head, event.type, ...(event.bdf === '' ? [] : [event.bdf]), ...fields].join(' ');
  }
  const ids = Object.entries(registryIds(event)).map(([key, value]) => `${key}=${value}`);
  return [head, event.kind, ...ids, ...(event.detail === '' ? [] : [`(${event.detail})`])].join(' ');
}
