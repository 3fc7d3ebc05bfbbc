import { expect } from 'chai';
import { OrderedEventHub } from './ordered-event-hub';

interface Ev {
  readonly sequence: number;
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
});
