import type { sendUnaryData, ServerUnaryCall } from '@grpc/grpc-js';
import type { ErrnoName } from '@p2p/errno';
import { fault } from '@p2p/proto';
import { toServiceError } from '@p2p/status';
import type { FaultRule, FaultRuleSet } from './fault-rules';

/** The FaultInjectionService handlers over one rule set. */
export function faultInjectionService(rules: FaultRuleSet): fault.FaultInjectionServiceServer {
  return {
    addFaultRule: handle((req: fault.AddFaultRuleRequest) => {
      const rule = req.rule ?? fault.FaultRule.fromPartial({});
      const added = rules.add({
        methodPattern: rule.methodPattern,
        delay: rule.delay ? { delayMs: rule.delay.delayMs, percentage: rule.delay.percentage } : undefined,
        abort: rule.abort
          ? {
              errno: rule.abort.errno as ErrnoName,
              grpcCode: rule.abort.grpcCode === 0 ? undefined : rule.abort.grpcCode,
              percentage: rule.abort.percentage,
            }
          : undefined,
        maxActivations: rule.maxActivations,
      });
      return { rule: toWire(added) };
    }),
    listFaultRules: handle(() => ({ rules: rules.list().map(toWire) })),
    removeFaultRule: handle((req: fault.RemoveFaultRuleRequest) => {
      rules.remove(req.id);
      return {};
    }),
    clearFaultRules: handle(() => ({ removed: rules.clear() })),
  };
}

function handle<Req, Res>(fn: (req: Req) => Res) {
  return (call: ServerUnaryCall<Req, Res>, callback: sendUnaryData<Res>): void => {
    try {
      callback(null, fn(call.request));
    } catch (error) {
      callback(toServiceError(error));
    }
  };
}

function toWire(rule: FaultRule): fault.FaultRule {
  return {
    id: rule.id,
    methodPattern: rule.methodPattern,
    delay: rule.delay,
    abort: rule.abort ? { errno: rule.abort.errno, grpcCode: rule.abort.grpcCode ?? 0, percentage: rule.abort.percentage } : undefined,
    maxActivations: rule.maxActivations,
    activations: BigInt(rule.activations),
  };
}
