import { type Op, type OpPair, pairs } from '../history';
import type { Violation } from './violation';

/**
 * Payloads intact: a region (`value.region`) holds what was last written to
 * it. A read that succeeded (`value.digest`: what it found) must find the
 * digest of the last write that succeeded before the read began, or of a
 * write that may have landed meanwhile: one in flight during the read, or
 * one whose outcome is unknown (`info`: it may land late). A write that
 * failed must not be found. `value.initial` on a read is the region's
 * content before any write.
 */
export function checkPayloads(ops: readonly Op[]): Violation[] {
  const { pairs: all } = pairs(ops.filter((op) => op.f === 'write' || op.f === 'read'));
  const writes = new Map<string, OpPair[]>();
  for (const pair of all) {
    if (pair.invoke.f !== 'write') continue;
    const region = String(pair.invoke.value?.region);
    writes.set(region, [...(writes.get(region) ?? []), pair]);
  }
  const violations: Violation[] = [];
  for (const { invoke, completions } of all) {
    const done = completions[0];
    if (invoke.f !== 'read' || done?.type !== 'ok') continue;
    const region = String(invoke.value?.region);
    const found = String(done.value?.digest);
    const allowed = allowedDigests(writes.get(region) ?? [], invoke, done, String(invoke.value?.initial));
    if (!allowed.has(found)) {
      violations.push({
        checker: 'payload',
        message: `read of ${region} (op ${done.index}) found ${found}; it could only have found ${[...allowed].join(' or ')}`,
        ops: [done.index],
        time: done.time,
      });
    }
  }
  return violations;
}

function allowedDigests(writes: readonly OpPair[], read: Op, readDone: Op, initial: string): Set<string> {
  // The last write known to be done before the read began.
  let last: OpPair | undefined;
  for (const w of writes) {
    const done = w.completions[0];
    if (done?.type === 'ok' && done.time < read.time && (last === undefined || done.time > last.completions[0]!.time)) last = w;
  }
  const allowed = new Set<string>();
  // No write done before the read began: the region may still hold what it held, whatever is in flight.
  allowed.add(last === undefined ? initial : String(last.invoke.value?.digest));
  for (const w of writes) {
    const done = w.completions[0];
    if (w === last || done?.type === 'fail' || w.invoke.time > readDone.time) continue;
    // Done before `last` was: overwritten, unless its outcome is unknown (it may land late).
    if (done?.type === 'ok' && last !== undefined && done.time < last.completions[0]!.time) continue;
    allowed.add(String(w.invoke.value?.digest));
  }
  return allowed;
}
