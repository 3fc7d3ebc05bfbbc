import { compareEvents } from './reorder-window';
import { isoMicros, type RegistryEvent, type ServiceEvent } from './service-event';

/**
 * One record of the Chrome trace-event format (what Perfetto and
 * chrome://tracing open): ph is the phase, ts microseconds.
 */
export interface TraceEvent {
  readonly name: string;
  readonly ph: 'M' | 'X' | 'b' | 'e' | 's' | 't' | 'f' | 'i';
  readonly pid: number;
  readonly tid?: number;
  readonly ts?: number;
  readonly dur?: number;
  readonly cat?: string;
  /** Async slices and flows: what pairs their phases. */
  readonly id?: number;
  /** A flow's end binds to the slice around it, not the next one. */
  readonly bp?: 'e';
  /** An instant's scope: its thread. */
  readonly s?: 't';
  readonly args?: Readonly<Record<string, unknown>>;
}

export interface ChromeTrace {
  readonly traceEvents: TraceEvent[];
  readonly displayTimeUnit: 'ns';
  readonly otherData: Readonly<Record<string, string>>;
}

/** How long a point event's slice lasts (µs): long enough to click, short of the next event on its thread. */
const POINT_US = 1;

/**
 * Threads that are not model processes get tids above any Linux pid
 * (PID_MAX_LIMIT, 2^22), so a model pid is its own tid.
 */
const SYNTHETIC_TID = 1 << 22;

/** Microseconds on the wall clock: the only clock every service shares. */
function micros(unixNanos: bigint): number {
  return Number(unixNanos / 1000n) + Number(unixNanos % 1000n) / 1000;
}

/** pci-emu's events that are faults, marked as instants. */
const PLATFORM_FAULTS = new Set(['reset', 'unplugged', 'iommu-fault']);

/** An event on its process and thread, at its time in µs. */
interface Placed {
  readonly event: ServiceEvent;
  readonly pid: number;
  readonly tid: number;
  readonly ts: number;
}

interface Thread {
  readonly tid: number;
  readonly name: string;
}

/** The thread an event belongs on: a model pid, a function, a buffer's moves. */
function threadOf(event: ServiceEvent): Thread {
  if (event.source === 'pci') {
    if (event.bdf === '') return { tid: SYNTHETIC_TID, name: 'iommu domains' };
    const match = /^[0-9a-f]{4}:([0-9a-f]{2}):([0-9a-f]{2})\.([0-7])$/i.exec(event.bdf);
    const routing = match === null ? 0 : (parseInt(match[1]!, 16) << 8) | (parseInt(match[2]!, 16) << 3) | parseInt(match[3]!, 10);
    return { tid: SYNTHETIC_TID + 1 + routing, name: event.bdf };
  }
  if (isMove(event)) return { tid: SYNTHETIC_TID + 0x10000 + event.bufferId, name: `dma-buf ${event.bufferId} moves` };
  if (event.pid !== 0) return { tid: event.pid, name: `pid ${event.pid}` };
  return { tid: SYNTHETIC_TID, name: 'dma-buf core' };
}

function isMove(event: RegistryEvent): boolean {
  return event.kind === 'revoke' || event.kind === 'unrevoke' || event.kind === 'move_done';
}

function argsOf(event: ServiceEvent): Record<string, unknown> {
  const common = { time: isoMicros(event.unixNanos), sequence: Number(event.sequence), monotonicNs: event.monotonicNs.toString() };
  if (event.source === 'pci') return { ...common, bdf: event.bdf, ...event.fields };
  const ids = Object.fromEntries(
    (['bufferId', 'attachmentId', 'pid', 'moveId', 'notificationId'] as const).filter((key) => event[key] !== 0).map((key) => [key, event[key]]),
  );
  return { ...common, ...ids, detail: event.detail };
}

function nameOf(event: ServiceEvent): string {
  if (event.source === 'pci') return event.type;
  return event.bufferId === 0 ? event.kind : `${event.kind} dma-buf ${event.bufferId}`;
}

/**
 * The events of a recording as a Chrome trace: a process per service, a
 * thread per model pid (the registry), per function (pci-emu) and per
 * buffer's moves; async slices for attachment (attach -> detach or fence)
 * and mapping (map -> unmap) lifetimes; a slice per move from the revoke to
 * its return, with a flow from it through each move_notify and its ack or
 * fence back to the return; instants for faults. Times are the wall clock,
 * which aligns the services (their monotonic clocks do not compare).
 */
export function toChromeTrace(recorded: readonly ServiceEvent[]): ChromeTrace {
  const events = [...recorded].sort(compareEvents);
  const out: TraceEvent[] = [];
  const pids = new Map<string, number>();
  const threads = new Map<string, Thread>();
  const pidOf = (service: string): number => {
    let pid = pids.get(service);
    if (pid === undefined) {
      pid = pids.size + 1;
      pids.set(service, pid);
      out.push({ name: 'process_name', ph: 'M', pid, args: { name: service } });
      out.push({ name: 'process_sort_index', ph: 'M', pid, args: { sort_index: pid } });
    }
    return pid;
  };
  const placed = events.map((event): Placed => {
    const pid = pidOf(event.service);
    const thread = threadOf(event);
    const key = `${pid}/${thread.tid}`;
    if (!threads.has(key)) {
      threads.set(key, thread);
      out.push({ name: 'thread_name', ph: 'M', pid, tid: thread.tid, args: { name: thread.name } });
    }
    return { event, pid, tid: thread.tid, ts: micros(event.unixNanos) };
  });
  if (placed.length === 0) return { traceEvents: out, displayTimeUnit: 'ns', otherData: {} };
  const start = placed[0]!.ts;
  const end = placed[placed.length - 1]!.ts + POINT_US;

  // A point's slice ends before the next event on its thread, so slices never overlap.
  const next = new Map<number, number>();
  const pointDur = new Map<Placed, number>();
  for (let i = placed.length - 1; i >= 0; i--) {
    const p = placed[i]!;
    const key = p.pid * 2 ** 32 + p.tid;
    const following = next.get(key);
    pointDur.set(p, following === undefined ? POINT_US : Math.min(POINT_US, Math.max(following - p.ts, 0.001)));
    next.set(key, p.ts);
  }

  // Each move: its revoke or unrevoke, its move_notify/ack/fence by notification, its return.
  const startOf = new Map<number, Placed>();
  const doneOf = new Map<number, Placed>();
  const chains = new Map<number, Placed[]>();
  for (const p of placed) {
    if (p.event.source !== 'registry') continue;
    if (p.event.kind === 'revoke' || p.event.kind === 'unrevoke') startOf.set(Number(p.event.sequence), p);
    if (p.event.kind === 'move_done') doneOf.set(p.event.moveId, p);
    if (p.event.notificationId !== 0) {
      const chain = chains.get(p.event.notificationId) ?? [];
      chain.push(p);
      chains.set(p.event.notificationId, chain);
    }
  }

  const open = { attachment: new Map<number, Placed>(), mapping: new Map<number, Placed>() };
  const asyncSlice = (cat: 'attachment' | 'mapping', id: number, p: Placed, ph: 'b' | 'e', ts: number): void => {
    const event = p.event as RegistryEvent;
    out.push({ name: `${cat} ${id} (dma-buf ${event.bufferId}, pid ${event.pid})`, cat, ph, id, pid: p.pid, tid: p.tid, ts, args: ph === 'b' ? argsOf(event) : {} });
  };
  const openAsync = (cat: 'attachment' | 'mapping', id: number, p: Placed): void => {
    open[cat].set(id, p);
    asyncSlice(cat, id, p, 'b', p.ts);
  };
  // One begun before the recording started begins with it.
  const closeAsync = (cat: 'attachment' | 'mapping', id: number, p: Placed): void => {
    const begun = open[cat].get(id);
    if (begun === undefined) asyncSlice(cat, id, p, 'b', start);
    else open[cat].delete(id);
    asyncSlice(cat, id, begun ?? p, 'e', p.ts);
  };
  // A fenced attachment is gone: the exporter's undo of it is no detach of another one.
  const fenced = new Set<number>();

  for (const p of placed) {
    const { event, pid, tid, ts } = p;
    const args = argsOf(event);
    if (event.source === 'registry' && (event.kind === 'revoke' || event.kind === 'unrevoke')) {
      const done = doneOf.get(Number(event.sequence));
      const dur = (done === undefined ? end : done.ts) - ts + POINT_US;
      out.push({ name: nameOf(event), cat: 'move', ph: 'X', pid, tid, ts, dur, args });
      continue;
    }
    out.push({ name: nameOf(event), cat: event.source === 'pci' ? 'platform' : 'dma-buf', ph: 'X', pid, tid, ts, dur: pointDur.get(p)!, args });
    if (event.source === 'pci') {
      if (PLATFORM_FAULTS.has(event.type)) out.push({ name: event.type, cat: 'fault', ph: 'i', s: 't', pid, tid, ts, args });
      continue;
    }
    switch (event.kind) {
      case 'attach':
        openAsync('attachment', event.attachmentId, p);
        break;
      case 'detach':
        if (!fenced.has(event.attachmentId)) closeAsync('attachment', event.attachmentId, p);
        break;
      case 'fence':
        out.push({ name: 'fence', cat: 'fault', ph: 'i', s: 't', pid, tid, ts, args });
        fenced.add(event.attachmentId);
        if (open.mapping.has(event.attachmentId)) closeAsync('mapping', event.attachmentId, p);
        closeAsync('attachment', event.attachmentId, p);
        break;
      case 'map':
        openAsync('mapping', event.attachmentId, p);
        break;
      case 'unmap':
        closeAsync('mapping', event.attachmentId, p);
        break;
    }
  }
  for (const cat of ['mapping', 'attachment'] as const) {
    for (const [id, begun] of open[cat]) asyncSlice(cat, id, begun, 'e', end);
  }

  // Flows bind to the slice that starts where they are (same pid, tid, ts).
  for (const [notificationId, steps] of chains) {
    const moveId = (steps[0]!.event as RegistryEvent).moveId;
    const revoke = startOf.get(moveId);
    const done = doneOf.get(moveId);
    const path = [...(revoke === undefined ? [] : [revoke]), ...steps, ...(done === undefined ? [] : [done])];
    if (path.length < 2) continue;
    path.forEach((p, i) => {
      const ph = i === 0 ? 's' : i === path.length - 1 ? 'f' : 't';
      out.push({ name: 'move_notify', cat: 'move', ph, id: notificationId, pid: p.pid, tid: p.tid, ts: p.ts, ...(ph === 'f' ? { bp: 'e' as const } : {}) });
    });
  }
  return { traceEvents: out, displayTimeUnit: 'ns', otherData: { clock: 'wall clock, microseconds since the Unix epoch' } };
}

/** A moment on an extra track: when (wall clock, ms), what, and its details. */
export interface TrackInstant {
  readonly unixMs: number;
  readonly name: string;
  readonly args?: Readonly<Record<string, unknown>>;
}

/** Adds a track of its own (a process named `name`, after the services) with an instant per moment. */
export function addInstantTrack(trace: ChromeTrace, name: string, instants: readonly TrackInstant[]): ChromeTrace {
  const pid = Math.max(0, ...trace.traceEvents.map((e) => e.pid)) + 1;
  const events: TraceEvent[] = [
    { name: 'process_name', ph: 'M', pid, args: { name } },
    { name: 'process_sort_index', ph: 'M', pid, args: { sort_index: pid } },
    { name: 'thread_name', ph: 'M', pid, tid: 1, args: { name } },
    ...instants.map((i): TraceEvent => ({ name: i.name, cat: name, ph: 'i', s: 't', pid, tid: 1, ts: i.unixMs * 1000, args: i.args ?? {} })),
  ];
  return { ...trace, traceEvents: [...trace.traceEvents, ...events] };
}
