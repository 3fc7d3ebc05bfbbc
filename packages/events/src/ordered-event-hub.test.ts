import { expect } from 'chai';
import type { EventTime } from './event-time';
import { OrderedEventHub } from './ordered-event-hub';

interface Ev {
  readonly sequence: number;
  readonly time: EventTime;
  readonly name: string;
}

describe('OrderedEventHub', () => {
  it('numbers events and delivers them in one order, also those emitted by a listener', () => {
    const hub = new OrderedEventHub<Ev>();
    const first: string[] = [];
    const second: string[] = [];
    hub.subscribe((e) => {
      first.push(`${e.sequence}:${e.name}`);
      if (e.name === 'a') hub.emit({ name: 'from-listener' });
    });
    hub.subscribe((e) => second.push(`${e.sequence}:${e.name}`));
    hub.emit({ name: 'a' });
    hub.emit({ name: 'b' });
    expect(first).to.deep.equal(['1:a', '2:from-listener', '3:b']);
    expect(second).to.deep.equal(first);
  });

  it('holds posted events until flush, and keeps delivering past a throwing listener, rethrowing later', () => {
    const hub = new OrderedEventHub<Ev>();
    const seen: string[] = [];
    hub.subscribe(() => {
      throw new Error('listener bug');
    });
    hub.subscribe((e) => seen.push(e.name));
    const deferred: Array<() => void> = [];
    const original = globalThis.queueMicrotask;
    globalThis.queueMicrotask = (callback) => void deferred.push(callback);
    try {
      hub.post({ name: 'x' });
      hub.post({ name: 'y' });
      expect(seen).to.deep.equal([]);
      hub.flush();
    } finally {
      globalThis.queueMicrotask = original;
    }
    expect(seen).to.deep.equal(['x', 'y']);
    expect(deferred).to.have.length(2);
    expect(deferred[0]).to.throw('listener bug');
  });

  it('stops delivering to an unsubscribed listener', () => {
    const hub = new OrderedEventHub<Ev>();
    const seen: string[] = [];
    const unsubscribe = hub.subscribe((e) => seen.push(e.name));
    hub.emit({ name: 'kept' });
    unsubscribe();
    hub.emit({ name: 'dropped' });
    expect(seen).to.deep.equal(['kept']);
  });

  it('stamps each event with the time it was posted, not delivered, on both clocks', async () => {
    const hub = new OrderedEventHub<Ev>();
    const seen: Ev[] = [];
    hub.subscribe((e) => seen.push(e));
    const before = BigInt(Date.now()) * 1_000_000n;
    hub.post({ name: 'first' });
    await new Promise((resolve) => setTimeout(resolve, 5));
    hub.post({ name: 'second' });
    hub.flush();
    const [first, second] = seen;
    expect(second!.time.monotonicNs - first!.time.monotonicNs >= 4_000_000n).to.equal(true);
    expect(second!.time.unixNanos - first!.time.unixNanos).to.equal(second!.time.monotonicNs - first!.time.monotonicNs);
    // The wall clock agrees with Date.now() to within its millisecond steps.
    expect(Number(first!.time.unixNanos - before) / 1e6).to.be.within(-2, 50);
  });

  it('numbers an event nobody listens to without delivering it later', () => {
    const hub = new OrderedEventHub<Ev>();
    expect(hub.emit({ name: 'unwatched' })).to.equal(1);
    const seen: string[] = [];
    hub.subscribe((e) => seen.push(`${e.sequence}:${e.name}`));
    expect(hub.emit({ name: 'watched' })).to.equal(2);
    expect(seen).to.deep.equal(['2:watched']);
  });
});
