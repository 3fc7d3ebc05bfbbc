export { FaultRuleSet, type FaultRule, type FaultRuleSpec, type FaultDecision } from './fault-rules';
export { faultInterceptor, type FaultInterceptorHooks } from './fault-interceptor';
export { faultInjectionService } from './fault-service';
