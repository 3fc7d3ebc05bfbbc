import { expect } from 'chai';
import { type ChromeTrace, toChromeTrace, type TraceEvent } from './chrome-trace';
import { ReorderWindow } from './reorder-window';
import type { PlatformEvent, RegistryEvent, ServiceEvent } from './service-event';

const T0 = 1_700_000_000_000_000_000n;
const IMPORTER = 4242;

let sequence = 0n;
function registry(at: number, kind: string, ids: Partial<Pick<RegistryEvent, 'bufferId' | 'attachmentId' | 'pid' | 'moveId' | 'notificationId'>> = {}): RegistryEvent {
  return {
    service: 'dmabuf-registry',
    source: 'registry',
    sequence: ++sequence,
    unixNanos: T0 + BigInt(at) * 1000n,
    monotonicNs: BigInt(at) * 1000n,
    kind,
    bufferId: 0,
    attachmentId: 0,
    pid: 0,
    moveId: 0,
    notificationId: 0,
    detail: '',
    ...ids,
  };
}

function platform(at: number, type: string, bdf = '0000:07:00.0'): PlatformEvent {
  return { service: 'pci-emu', source: 'pci', sequence: ++sequence, unixNanos: T0 + BigInt(at) * 1000n, monotonicNs: 5n + BigInt(at), bdf, type, fields: {} };
}

/** A revoke under a mapped dynamic attachment: move_notify, ack, the unmap for the importer, the return. */
function revokeScenario(): { events: ServiceEvent[]; revoke: RegistryEvent } {
  const buffer = { bufferId: 3 };
  const importer = { ...buffer, attachmentId: 11, pid: IMPORTER };
  const events: ServiceEvent[] = [registry(0, 'export', buffer), registry(10, 'attach', importer), registry(20, 'map', importer)];
  const revoke = registry(100, 'revoke', buffer);
  const move = { ...importer, moveId: Number(revoke.sequence), notificationId: 1 };
  events.push(
    revoke,
    registry(105, 'move_notify', move),
    registry(140, 'ack', move),
    registry(150, 'unmap', importer),
    registry(160, 'move_done', { ...buffer, moveId: Number(revoke.sequence) }),
    platform(170, 'decode-changed'),
    registry(300, 'detach', importer),
  );
  return { events, revoke };
}

function at(trace: ChromeTrace, ph: TraceEvent['ph'], name?: string): TraceEvent[] {
  return trace.traceEvents.filter((e) => e.ph === ph && (name === undefined || e.name === name));
}

/** The complete slice a flow phase binds to: same process, thread and start. */
function boundSlice(trace: ChromeTrace, flow: TraceEvent): TraceEvent | undefined {
  return trace.traceEvents.find((e) => e.ph === 'X' && e.pid === flow.pid && e.tid === flow.tid && e.ts === flow.ts);
}

describe('toChromeTrace', () => {
  it('names a process per service and a thread per model pid, per function and per buffer\'s moves', () => {
    const trace = toChromeTrace(revokeScenario().events);
    const processes = at(trace, 'M', 'process_name').map((e) => e.args?.name);
    expect(processes).to.have.members(['dmabuf-registry', 'pci-emu']);
    const threads = at(trace, 'M', 'thread_name').map((e) => e.args?.name);
    expect(threads).to.include.members([`pid ${IMPORTER}`, 'dma-buf 3 moves', '0000:07:00.0', 'dma-buf core']);
    expect(at(trace, 'M', 'thread_name').find((e) => e.args?.name === `pid ${IMPORTER}`)?.tid).to.equal(IMPORTER);
    for (const event of trace.traceEvents.filter((e) => e.ph !== 'M')) {
      expect(at(trace, 'M', 'thread_name').some((m) => m.pid === event.pid && m.tid === event.tid), `${event.name} on a named thread`).to.equal(true);
    }
  });

  it('puts wall-clock microseconds on every event', () => {
    const trace = toChromeTrace(revokeScenario().events);
    const first = trace.traceEvents.find((e) => e.name === 'export dma-buf 3');
    expect(first?.ts).to.equal(Number(T0 / 1000n));
    expect(trace.traceEvents.find((e) => e.name === 'decode-changed')?.ts).to.equal(Number(T0 / 1000n) + 170);
  });

  it('gives each async slice begin an end with the same id: attachments from attach to detach, mappings from map to unmap', () => {
    const trace = toChromeTrace(revokeScenario().events);
    for (const cat of ['attachment', 'mapping']) {
      const begins = at(trace, 'b').filter((e) => e.cat === cat);
      const ends = at(trace, 'e').filter((e) => e.cat === cat);
      expect(begins, cat).to.have.length(1);
      expect(ends.map((e) => e.id)).to.deep.equal(begins.map((e) => e.id));
      expect(ends[0]!.ts! > begins[0]!.ts!).to.equal(true);
    }
    const ts = (cat: string, ph: 'b' | 'e'): number => trace.traceEvents.find((e) => e.cat === cat && e.ph === ph)!.ts!;
    expect(ts('mapping', 'e') - ts('mapping', 'b')).to.equal(130);
    expect(ts('attachment', 'e') - ts('attachment', 'b')).to.equal(290);
  });

  it('closes slices still open when the recording ends, and opens those begun before it', () => {
    const events = revokeScenario().events.filter((e) => !(e.source === 'registry' && (e.kind === 'attach' || e.kind === 'unmap')));
    const trace = toChromeTrace(events);
    for (const cat of ['attachment', 'mapping']) {
      expect(at(trace, 'b').filter((e) => e.cat === cat), cat).to.have.length(1);
      expect(at(trace, 'e').filter((e) => e.cat === cat), cat).to.have.length(1);
    }
  });

  it('draws the revoke as a slice to its return, and a flow from it through the move_notify and the ack back to the return', () => {
    const { events, revoke } = revokeScenario();
    const trace = toChromeTrace(events);
    const slice = at(trace, 'X', 'revoke dma-buf 3')[0]!;
    expect(slice.dur).to.equal(61);
    const flow = trace.traceEvents.filter((e) => e.cat === 'move' && ['s', 't', 'f'].includes(e.ph));
    expect(flow.map((e) => e.ph)).to.deep.equal(['s', 't', 't', 'f']);
    expect(new Set(flow.map((e) => e.id))).to.deep.equal(new Set([1]));
    expect(flow.map((e) => boundSlice(trace, e)?.name)).to.deep.equal(['revoke dma-buf 3', 'move_notify dma-buf 3', 'ack dma-buf 3', 'move_done dma-buf 3']);
    expect(boundSlice(trace, flow[0]!)?.args?.sequence).to.equal(Number(revoke.sequence));
    expect(flow[3]!.bp).to.equal('e');
  });

  it('marks faults as instants: a reset, an IOMMU fault, a fence (which also ends the attachment)', () => {
    const buffer = { bufferId: 5 };
    const importer = { ...buffer, attachmentId: 7, pid: IMPORTER };
    const revoke = registry(100, 'revoke', buffer);
    const move = { ...importer, moveId: Number(revoke.sequence), notificationId: 9 };
    const trace = toChromeTrace([
      registry(10, 'attach', importer),
      revoke,
      registry(101, 'move_notify', move),
      registry(1100, 'fence', move),
      registry(1200, 'move_done', { ...buffer, moveId: Number(revoke.sequence) }),
      platform(1300, 'reset'),
      platform(1400, 'iommu-fault', '0000:09:00.0'),
    ]);
    expect(at(trace, 'i').map((e) => e.name)).to.deep.equal(['fence', 'reset', 'iommu-fault']);
    expect(at(trace, 'i').every((e) => e.s === 't')).to.equal(true);
    expect(at(trace, 'e').find((e) => e.cat === 'attachment')?.ts).to.equal(Number(T0 / 1000n) + 1100);
    const flow = trace.traceEvents.filter((e) => e.cat === 'move' && e.id === 9 && ['s', 't', 'f'].includes(e.ph));
    expect(flow.map((e) => boundSlice(trace, e)?.name)).to.deep.equal(['revoke dma-buf 5', 'move_notify dma-buf 5', 'fence dma-buf 5', 'move_done dma-buf 5']);
  });

  it('keeps point slices on one thread from overlapping', () => {
    const importer = { bufferId: 1, attachmentId: 2, pid: IMPORTER };
    const trace = toChromeTrace([registry(0, 'map', importer), { ...registry(0, 'unmap', importer), unixNanos: T0 + 300n }]);
    const [map, unmap] = at(trace, 'X');
    expect(map!.ts! + map!.dur!).to.be.at.most(unmap!.ts!);
  });

  it('is an empty trace for no events', () => {
    expect(toChromeTrace([]).traceEvents).to.deep.equal([]);
  });
});

describe('ReorderWindow', () => {
  it('releases events in wall-clock order once the window has passed them, and the rest at the end', () => {
    const out: string[] = [];
    const window = new ReorderWindow(50_000_000n, (e) => out.push(e.source === 'pci' ? e.type : e.kind));
    window.push(registry(30_000, 'late-stream'));
    window.push(platform(10_000, 'early'));
    window.push(registry(200_000, 'last'));
    window.tick(T0 + 70_000_000n);
    expect(out).to.deep.equal(['early']);
    window.tick(T0 + 80_000_000n);
    expect(out).to.deep.equal(['early', 'late-stream']);
    window.drain();
    expect(out).to.deep.equal(['early', 'late-stream', 'last']);
  });
});
