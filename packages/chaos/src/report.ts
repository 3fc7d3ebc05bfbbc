import { checkExactlyOnce } from './checkers/exactly-once';
import { checkLeaks } from './checkers/leaks';
import { checkPayloads } from './checkers/payload';
import { faultRecords, type FaultRecord } from './checkers/recovery';
import { checkRevokes } from './checkers/revoke';
import type { Violation } from './checkers/violation';
import { NEMESIS, type Op } from './history';

/** One row of the result: a fault kind aimed at a service, or the time between faults. */
export interface ReportRow {
  readonly kind: string;
  readonly service: string;
  readonly faults: number;
  readonly operations: number;
  readonly ok: number;
  readonly failed: number;
  readonly indeterminate: number;
  readonly violations: number;
  /** Recovery times in ms; p50 and p99 over this row's faults, undefined if none recovered. */
  readonly recoveryP50Ms: number | undefined;
  readonly recoveryP99Ms: number | undefined;
  /** Faults after which no operation succeeded before the run ended. */
  readonly unrecovered: number;
}

export interface CampaignResult {
  readonly rows: ReportRow[];
  readonly violations: Violation[];
  readonly faults: FaultRecord[];
  /** True when no checker found anything: the exit status is 0. */
  readonly valid: boolean;
}

/** Every checker over a history: exactly once, payloads, revokes, leaks; then the table by fault. */
export function analyze(ops: readonly Op[]): CampaignResult {
  const violations = [...checkExactlyOnce(ops), ...checkPayloads(ops), ...checkRevokes(ops), ...checkLeaks(ops)].sort((a, b) => a.time - b.time);
  const faults = faultRecords(ops);
  const completions = ops.filter((op) => op.process !== NEMESIS && op.type !== 'invoke');
  const inWindow = (time: number, fault: FaultRecord): boolean => time >= fault.start && time <= fault.windowEnd;
  const rows = new Map<string, { kind: string; service: string; faults: FaultRecord[]; ops: Op[]; violations: Violation[] }>();
  const row = (kind: string, service: string): { kind: string; service: string; faults: FaultRecord[]; ops: Op[]; violations: Violation[] } => {
    const key = `${kind}\u0000${service}`;
    let found = rows.get(key);
    if (found === undefined) rows.set(key, (found = { kind, service, faults: [], ops: [], violations: [] }));
    return found;
  };
  row('none', '(between faults)');
  for (const fault of faults) row(fault.kind, fault.service).faults.push(fault);
  for (const op of completions) {
    const fault = faults.find((f) => inWindow(op.time, f));
    (fault === undefined ? row('none', '(between faults)') : row(fault.kind, fault.service)).ops.push(op);
  }
  for (const violation of violations) {
    const fault = faults.find((f) => inWindow(violation.time, f));
    (fault === undefined ? row('none', '(between faults)') : row(fault.kind, fault.service)).violations.push(violation);
  }
  return {
    rows: [...rows.values()].map((r) => {
      const recoveries = r.faults.map((f) => f.recovery).filter((t): t is number => t !== undefined).sort((a, b) => a - b);
      return {
        kind: r.kind,
        service: r.service,
        faults: r.faults.length,
        operations: r.ops.length,
        ok: r.ops.filter((op) => op.type === 'ok').length,
        failed: r.ops.filter((op) => op.type === 'fail').length,
        indeterminate: r.ops.filter((op) => op.type === 'info').length,
        violations: r.violations.length,
        recoveryP50Ms: percentileMs(recoveries, 0.5),
        recoveryP99Ms: percentileMs(recoveries, 0.99),
        unrecovered: r.faults.filter((f) => f.recovery === undefined).length,
      };
    }),
    violations,
    faults,
    valid: violations.length === 0,
  };
}

function percentileMs(sortedNs: readonly number[], p: number): number | undefined {
  if (sortedNs.length === 0) return undefined;
  return sortedNs[Math.min(sortedNs.length - 1, Math.ceil(p * sortedNs.length) - 1)]! / 1e6;
}
