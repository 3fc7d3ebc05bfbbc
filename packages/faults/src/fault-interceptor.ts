import { type ServerInterceptor, ServerInterceptingCall, ServerListenerBuilder } from '@grpc/grpc-js';
import { errno } from '@p2p/errno';
import { toStatus } from '@p2p/status';
import type { FaultDecision, FaultRuleSet } from './fault-rules';

/** What the interceptor tells its server about; both optional. */
export interface FaultInterceptorHooks {
  /** A call was faulted: delayed by `delayMs`, then aborted if `aborted`. */
  onFault?: (method: string, delayMs: number, aborted: boolean) => void;
  /**
   * Fault injection failed on a call (or `onFault` threw); the call went on
   * unfaulted, since a broken test aid must not take the server down.
   */
  onError?: (method: string, error: unknown) => void;
}

/**
 * A server interceptor that applies the rule set to every call: it holds the
 * call's metadata for the delay, then either lets the call through or ends
 * it with the abort's status before the handler ever runs.
 *
 * Nothing here throws: an exception out of a listener callback is uncaught
 * in grpc-js and ends the process.
 */
export function faultInterceptor(rules: FaultRuleSet, hooks: FaultInterceptorHooks = {}): ServerInterceptor {
  const report = (method: string, error: unknown): void => {
    try {
      hooks.onError?.(method, error);
    } catch {
      // The report itself failed; there is nobody left to tell, and the call must go on.
    }
  };
  // A call that starts with no rule in the set, as nearly all do, skips the
  // layer: returned as it is (grpc-js calls only the interface methods of an
  // interceptor's result, whatever its types say).
  return (methodDescriptor, call) =>
    rules.size === 0
      ? (call as ServerInterceptingCall)
      : new ServerInterceptingCall(call, {
      start: (next) => {
        const method = methodDescriptor.path;
        const listener = new ServerListenerBuilder()
          .withOnReceiveMetadata((metadata, proceed) => {
            let decision: FaultDecision;
            try {
              decision = rules.decide(method);
            } catch (error) {
              report(method, error);
              proceed(metadata);
              return;
            }
            if (decision.delayMs === 0 && !decision.abort) {
              proceed(metadata);
              return;
            }
            try {
              hooks.onFault?.(method, decision.delayMs, decision.abort !== undefined);
            } catch (error) {
              report(method, error);
            }
            const act = (): void => {
              const { abort } = decision;
              if (!abort) {
                proceed(metadata);
                return;
              }
              try {
                call.sendStatus(toStatus(errno(abort.errno, `fault injected by rule ${abort.ruleId} on ${method}`), abort.grpcCode));
              } catch (error) {
                report(method, error);
                proceed(metadata);
              }
            };
            if (decision.delayMs > 0) setTimeout(act, decision.delayMs);
            else act();
          })
          .build();
        next(listener);
      },
    });
}
