import { type ServerInterceptor, ServerInterceptingCall, ServerListenerBuilder } from '@grpc/grpc-js';
import { errno } from '@p2p/errno';
import { toStatus } from '@p2p/status';
import type { FaultRuleSet } from './fault-rules';

/**
 * A server interceptor that applies the rule set to every call: it holds the
 * call's metadata for the delay, then either lets the call through or ends
 * it with the abort's status before the handler ever runs.
 */
export function faultInterceptor(rules: FaultRuleSet, onFault?: (method: string, delayMs: number, aborted: boolean) => void): ServerInterceptor {
  return (methodDescriptor, call) =>
    new ServerInterceptingCall(call, {
      start: (next) => {
        const listener = new ServerListenerBuilder()
          .withOnReceiveMetadata((metadata, proceed) => {
            const decision = rules.decide(methodDescriptor.path);
            if (decision.delayMs === 0 && !decision.abort) {
              proceed(metadata);
              return;
            }
            onFault?.(methodDescriptor.path, decision.delayMs, decision.abort !== undefined);
            const act = (): void => {
              const { abort } = decision;
              if (!abort) {
                proceed(metadata);
                return;
              }
              const injected = errno(abort.errno, `fault injected by rule ${abort.ruleId} on ${methodDescriptor.path}`);
              call.sendStatus(toStatus(injected, abort.grpcCode));
            };
            if (decision.delayMs > 0) setTimeout(act, decision.delayMs);
            else act();
          })
          .build();
        next(listener);
      },
    });
}
