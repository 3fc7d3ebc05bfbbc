import type { Readable } from 'node:stream';
import type { ServerWritableStream } from '@grpc/grpc-js';
import { failStream } from './handlers';

/** One turn of the event loop: what else is due (I/O, other calls) runs first. */
const nextTurn = (): Promise<void> => new Promise((resolve) => setImmediate(resolve));

/**
 * Sends a server stream's messages, made one at a time by `messages`, and
 * ends it; a message that throws ends the call with its errno instead. One
 * message per turn of the event loop, so other calls are served while a
 * large answer goes out; none while grpc-js still holds a window's worth
 * (write() returned false: wait for 'drain'), so memory holds a window, not
 * the answer; and none after the client cancelled.
 */
export async function sendPaced<Res>(call: ServerWritableStream<unknown, Res>, messages: Iterator<Res>): Promise<void> {
  let gone = false;
  const leave = (): void => {
    gone = true;
  };
  for (const event of ['cancelled', 'error', 'close']) call.once(event, leave);
  try {
    for (;;) {
      if (gone || call.cancelled) return;
      const next = messages.next();
      if (next.done) break;
      if (!call.write(next.value)) await drained(call);
      await nextTurn();
    }
    call.end();
  } catch (error) {
    failStream(call, error);
  } finally {
    for (const event of ['cancelled', 'error', 'close']) call.off(event, leave);
  }
}

/** Resolves on 'drain', or as soon as the call can take no more (a cancelled call never drains). */
function drained(call: NodeJS.EventEmitter): Promise<void> {
  return new Promise((resolve) => {
    const events = ['drain', 'cancelled', 'error', 'close'];
    const done = (): void => {
      for (const event of events) call.off(event, done);
      resolve();
    };
    for (const event of events) call.once(event, done);
  });
}

/**
 * Hands a client stream's messages to `handle` one per turn of the event
 * loop. grpc-js delivers the messages it has buffered back to back; pausing
 * after each lets other calls in between, and leaves the rest in the
 * client's flow-control window rather than in this process's memory.
 */
export function receivePaced<Req>(call: Readable, handle: (message: Req) => void): void {
  call.on('data', (message: Req) => {
    handle(message);
    call.pause();
    setImmediate(() => call.resume());
  });
}
