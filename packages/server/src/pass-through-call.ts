import { type Metadata, ServerInterceptingCall, type ServerInterceptingCallInterface } from '@grpc/grpc-js';

export type NextCall = ServerInterceptingCallInterface;
export type CallListener = Parameters<NextCall['start']>[0];
export type CallStatus = Parameters<NextCall['sendStatus']>[0];

/**
 * An intercepting call that hands every event and send straight to the next
 * call; an interceptor overrides only what it needs to see. The stock
 * ServerInterceptingCall wraps the listener and each send in closures at
 * every layer, a cost each RPC pays once per interceptor.
 */
export class PassThroughCall extends ServerInterceptingCall {
  protected readonly next: NextCall;

  constructor(next: NextCall) {
    super(next);
    this.next = next;
  }

  override start(listener: CallListener): void {
    this.next.start(listener);
  }

  override sendMetadata(metadata: Metadata): void {
    this.next.sendMetadata(metadata);
  }

  override sendMessage(message: unknown, callback: () => void): void {
    this.next.sendMessage(message, callback);
  }

  override sendStatus(status: CallStatus): void {
    this.next.sendStatus(status);
  }
}
