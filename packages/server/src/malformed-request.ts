import { type MethodDefinition, ServerInterceptingCall, type ServerInterceptor, ServerListenerBuilder, type ServiceDefinition } from '@grpc/grpc-js';
import { errno } from '@p2p/errno';
import { toStatus } from '@p2p/status';

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
  return (methodDescriptor, call) =>
    new ServerInterceptingCall(call, {
      start: (next) => {
        next(
          new ServerListenerBuilder()
            .withOnReceiveMessage((message, proceed) => {
              if (message instanceof MalformedRequest) {
                call.sendStatus(toStatus(errno('EINVAL', `the request is not a ${methodDescriptor.path} message: ${message.reason}`)));
              } else {
                proceed(message);
              }
            })
            .build(),
        );
      },
    });
}
