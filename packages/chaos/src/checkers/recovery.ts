import { NEMESIS, type Op, pairs } from '../history';

/** One fault the nemesis caused, and how long the workload took to get an operation through after it healed. */
export interface FaultRecord {
  /** "kill", "stop", "partition", "flr", "mem-off", "d3", "unplug"... */
  readonly kind: string;
  readonly service: string;
  readonly start: number;
  /** When the nemesis healed it (restart done, SIGCONT, partition healed); undefined if it never did. */
  readonly healed: number | undefined;
  /** Nanoseconds from the heal to the first workload operation, invoked after it, that succeeded. */
  readonly recovery: number | undefined;
  /** Where its effects are counted: from its start to the recovery (or to the next fault). */
  readonly windowEnd: number;
}

/**
 * The faults of a history: each nemesis invoke starts one (value.kind,
 * value.service) and its ok completion heals it. Recovery is measured from
 * the heal to the completion of the first workload op invoked after it that
 * succeeded, as Jepsen measures availability after a partition heals.
 */
export function faultRecords(ops: readonly Op[]): FaultRecord[] {
  const workloadOk = ops.filter((op) => op.process !== NEMESIS && op.type === 'ok' && op.invoke !== undefined);
  const invokeTime = new Map(ops.filter((op) => op.type === 'invoke').map((op) => [op.index, op.time]));
  const { pairs: faults } = pairs(ops.filter((op) => op.process === NEMESIS));
  const records = faults.map(({ invoke, completions }) => {
    const heal = completions.find((c) => c.type === 'ok');
    const healed = heal?.time;
    const first = healed === undefined ? undefined : workloadOk.find((op) => (invokeTime.get(op.invoke!) ?? -1) >= healed);
    return {
      kind: String(invoke.value?.kind ?? invoke.f),
      service: String(invoke.value?.service ?? ''),
      start: invoke.time,
      healed,
      recovery: first === undefined || healed === undefined ? undefined : first.time - healed,
    };
  });
  const end = ops.length === 0 ? 0 : ops[ops.length - 1]!.time;
  return records.map((record, i) => {
    const next = records[i + 1]?.start ?? end;
    const recovered = record.healed !== undefined && record.recovery !== undefined ? record.healed + record.recovery : next;
    return { ...record, windowEnd: Math.min(Math.max(recovered, record.start), next) };
  });
}
