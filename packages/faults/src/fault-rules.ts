import { errno, type ErrnoName, isErrnoName } from '@p2p/errno';
import { compileMethodGlob, type MethodMatcher } from './method-glob';

/** A rule as a client states it; `id` and `activations` are the server's. */
export interface FaultRuleSpec {
  /** Full method name with `*` wildcards, e.g. `/p2p.pci.v1.PciEmuService/Mmio*`. */
  methodPattern: string;
  delay?: { delayMs: number; percentage: number };
  abort?: { errno: ErrnoName; grpcCode?: number; percentage: number };
  /** Stop after this many faulted calls; 0 means no limit. */
  maxActivations: number;
}

export interface FaultRule extends FaultRuleSpec {
  id: string;
  activations: number;
}

/** What to do to one call: wait `delayMs`, then fail with `abort` if set. */
export interface FaultDecision {
  delayMs: number;
  abort?: { errno: ErrnoName; grpcCode?: number; ruleId: string };
}

const MAX_DELAY_MS = 600_000;
/** Longer than any real full method name, short enough to log and to match cheaply. */
export const MAX_METHOD_PATTERN_LENGTH = 256;
/** Rules per set; a client cannot grow the set, and the work of each call, without bound. */
export const MAX_FAULT_RULES = 64;
/** How much of a rejected input an error message quotes. */
const QUOTE_LENGTH = 32;

/**
 * Services no rule may fault, whatever its pattern: a rule `*` that aborts
 * everything must still let the client clear it, and must not make health
 * checks (and the orchestrator restarting the process) or reflection fail.
 */
const EXEMPT_METHOD_PREFIXES = ['/p2p.fault.v1.FaultInjectionService/', '/grpc.health.v1.Health/', '/grpc.reflection.'];

/**
 * The rules of one server. Semantics follow the xDS HTTP fault filter: each
 * matching rule rolls its delay and its abort independently; the call is
 * delayed first and aborted after the delay. A rule counts one activation per
 * call it faults, and stops matching at `maxActivations`.
 */
export class FaultRuleSet {
  private readonly rules = new Map<string, { rule: FaultRule; matcher: MethodMatcher }>();
  private nextId = 1;

  /** @param random a source in [0, 1); injectable so tests are deterministic. */
  constructor(private readonly random: () => number = Math.random) {}

  add(spec: FaultRuleSpec): FaultRule {
    validate(spec);
    if (this.rules.size >= MAX_FAULT_RULES) throw errno('ENOSPC', `the set holds ${MAX_FAULT_RULES} fault rules already; remove some first`);
    const rule: FaultRule = { ...spec, id: `fault-${this.nextId++}`, activations: 0 };
    this.rules.set(rule.id, { rule, matcher: compileMethodGlob(spec.methodPattern) });
    return { ...rule };
  }

  /** How many rules the set holds. */
  get size(): number {
    return this.rules.size;
  }

  list(): FaultRule[] {
    return [...this.rules.values()].map(({ rule }) => ({ ...rule }));
  }

  remove(id: string): void {
    if (!this.rules.delete(id)) throw errno('ENOENT', `no fault rule with id ${quote(id)}`);
  }

  clear(): number {
    const removed = this.rules.size;
    this.rules.clear();
    return removed;
  }

  /** Rolls every matching rule for one call of `method` and returns the combined fault. */
  decide(method: string): FaultDecision {
    const decision: FaultDecision = { delayMs: 0 };
    if (EXEMPT_METHOD_PREFIXES.some((prefix) => method.startsWith(prefix))) return decision;
    for (const { rule, matcher } of this.rules.values()) {
      if (!matcher(method)) continue;
      if (rule.maxActivations > 0 && rule.activations >= rule.maxActivations) continue;
      const delayed = rule.delay !== undefined && this.roll(rule.delay.percentage);
      const aborted = rule.abort !== undefined && decision.abort === undefined && this.roll(rule.abort.percentage);
      if (delayed && rule.delay) decision.delayMs += rule.delay.delayMs;
      if (aborted && rule.abort) decision.abort = { errno: rule.abort.errno, grpcCode: rule.abort.grpcCode, ruleId: rule.id };
      if (delayed || aborted) rule.activations++;
    }
    return decision;
  }

  private roll(percentage: number): boolean {
    return percentage >= 100 || this.random() * 100 < percentage;
  }
}

function validate(spec: FaultRuleSpec): void {
  checkMethodPattern(spec.methodPattern);
  if (!spec.delay && !spec.abort) throw errno('EINVAL', 'a fault rule needs a delay, an abort or both');
  if (spec.delay) {
    checkPercentage(spec.delay.percentage, 'delay.percentage');
    if (!Number.isInteger(spec.delay.delayMs) || spec.delay.delayMs < 0 || spec.delay.delayMs > MAX_DELAY_MS) {
      throw errno('EINVAL', `delay.delay_ms must be an integer in [0, ${MAX_DELAY_MS}]`);
    }
  }
  if (spec.abort) {
    checkPercentage(spec.abort.percentage, 'abort.percentage');
    if (!isErrnoName(spec.abort.errno)) throw errno('EINVAL', `abort.errno ${quote(spec.abort.errno)} is not an errno name`);
    if (spec.abort.grpcCode !== undefined && (spec.abort.grpcCode < 1 || spec.abort.grpcCode > 16)) {
      throw errno('EINVAL', 'abort.grpc_code must be a failing gRPC status code (1-16)');
    }
  }
  if (!Number.isInteger(spec.maxActivations) || spec.maxActivations < 0) {
    throw errno('EINVAL', 'max_activations must be a non-negative integer');
  }
}

function checkPercentage(value: number, field: string): void {
  if (!(value >= 0 && value <= 100)) throw errno('EINVAL', `${field} must be within [0, 100]`);
}

/** A full method name is `/package.Service/Method`: visible ASCII, no spaces, starting with `/`. */
function checkMethodPattern(pattern: string): void {
  if (pattern.length === 0) throw errno('EINVAL', 'method_pattern is empty');
  if (pattern.length > MAX_METHOD_PATTERN_LENGTH) {
    throw errno('EINVAL', `method_pattern ${quote(pattern)} is ${pattern.length} characters long; at most ${MAX_METHOD_PATTERN_LENGTH} are allowed`);
  }
  if (!/^[\x21-\x7e]*$/.test(pattern)) {
    throw errno('EINVAL', `method_pattern ${quote(pattern)} has a character outside printable ASCII`);
  }
  if (!pattern.startsWith('/') && !pattern.startsWith('*')) {
    throw errno('EINVAL', `method_pattern ${quote(pattern)} must start with '/' or '*'`);
  }
}

/** Quotes a short, escaped prefix of client input, so that an error message stays short and one line. */
function quote(input: string): string {
  const shown = JSON.stringify(input.slice(0, QUOTE_LENGTH)).replace(/[^\x20-\x7e]/g, (c) => `\\u${c.charCodeAt(0).toString(16).padStart(4, '0')}`);
  return input.length > QUOTE_LENGTH ? `${shown}... (${input.length} characters)` : shown;
}
