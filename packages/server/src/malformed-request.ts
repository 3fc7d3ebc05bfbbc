import type { MethodDefinition, ServerInterceptor, ServiceDefinition } from '@grpc/grpc-js';
import { errno } from '@p2p/errno';
import { toStatus } from '@p2p/status';
import { type CallListener, type NextCall, PassThroughCall } from './pass-through-call';

/** What a request decodes to when its bytes are no message of the method's request type. */
class MalformedRequest {
  constructor(readonly reason: string) {}
}

/**
 * `definition` with request decoding that cannot throw: bytes that are not
 * a message of the request type (truncated, a wire type the field cannot
 * have) decode to a MalformedRequest, which malformedRequestInterceptor()
 * answers with EINVAL. grpc-js answers a throwing decoder itself, with
 * INTERNAL and no errno: the code the README keeps for bugs in the server,
 * for what is the caller's mistake.
 */
export function tolerantDecoding(definition: ServiceDefinition): ServiceDefinition {
  const tolerant: Record<string, MethodDefinition<object, object>> = {};
  for (const [name, method] of Object.entries(definition)) {
    tolerant[name] = {
      ...method,
      requestDeserialize: (bytes: Buffer): object => {
        try {
          return method.requestDeserialize(bytes);
        } catch (error) {
          return new MalformedRequest(error instanceof Error ? error.message : String(error));
        }
      },
    };
  }
  return tolerant;
}

/**
 * Ends a call whose request (or any message of a stream) did not decode
 * with EINVAL, before a handler sees it. Pairs with tolerantDecoding().
 */
export function malformedRequestInterceptor(): ServerInterceptor {
  return (methodDescriptor, call) => new CheckedCall(call, methodDescriptor.path);
}

/** A call whose messages reach the handler only while each decoded; the first that did not ends the call. */
class CheckedCall extends PassThroughCall {
  constructor(
    next: NextCall,
    private readonly method: string,
  ) {
    super(next);
  }

  override start(listener: CallListener): void {
    let refused = false;
    this.next.start({
      onReceiveMetadata: (metadata) => listener.onReceiveMetadata(metadata),
      onReceiveMessage: (message: unknown) => {
        if (refused) return;
        if (message instanceof MalformedRequest) {
          // Nothing more reaches the handler, not even the half-close: it would answer a request it never saw.
          refused = true;
          this.next.sendStatus(toStatus(errno('EINVAL', `the request is not a ${this.method} message: ${message.reason}`)));
          return;
        }
        listener.onReceiveMessage(message);
      },
      onReceiveHalfClose: () => {
        if (!refused) listener.onReceiveHalfClose();
      },
      onCancel: () => listener.onCancel(),
    });
  }
}
