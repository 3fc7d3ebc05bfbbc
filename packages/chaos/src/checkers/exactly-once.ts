import { type Op, pairs } from '../history';
import type { Violation } from './violation';

/**
 * Every work request completes exactly once, and a queue pair completes its
 * requests in the order they were posted (an RC send queue's completions
 * are in order; IBTA 10.8.6): a request with no completion was lost, one
 * with two was done twice, a completion of nothing was invented. `info` is
 * a completion (the worker lost track of the request, e.g. its process
 * died): the request may or may not have happened, but it is accounted for.
 * Ops of function `f` (default "post") carry `value.queue` naming their queue.
 */
export function checkExactlyOnce(ops: readonly Op[], f = 'post'): Violation[] {
  const violations: Violation[] = [];
  const { pairs: all, orphans } = pairs(ops.filter((op) => op.f === f));
  for (const orphan of orphans) {
    violations.push({ checker: 'exactly-once', message: `a completion of a request never posted (invoke ${orphan.invoke ?? 'none'})`, ops: [orphan.index], time: orphan.time });
  }
  const lastCompleted = new Map<string, Op>();
  for (const { invoke, completions } of all) {
    if (completions.length === 0) {
      violations.push({ checker: 'exactly-once', message: `${describe(invoke)} never completed`, ops: [invoke.index], time: invoke.time });
      continue;
    }
    if (completions.length > 1) {
      violations.push({ checker: 'exactly-once', message: `${describe(invoke)} completed ${completions.length} times`, ops: [invoke.index, ...completions.map((c) => c.index)], time: completions[1]!.time });
    }
  }
  // In order per queue: the completions (not info: those are the worker's own bookkeeping) follow post order.
  const completed = all
    .filter((p) => p.completions.length > 0 && p.completions[0]!.type !== 'info')
    .map((p) => ({ invoke: p.invoke, completion: p.completions[0]! }))
    .sort((a, b) => a.completion.index - b.completion.index);
  for (const { invoke, completion } of completed) {
    const queue = String(invoke.value?.queue ?? invoke.process);
    const previous = lastCompleted.get(queue);
    if (previous !== undefined && previous.index > invoke.index) {
      violations.push({
        checker: 'exactly-once',
        message: `${describe(invoke)} completed after ${describe(previous)}, which was posted later on queue ${queue}`,
        ops: [completion.index, previous.index],
        time: completion.time,
      });
    }
    if (previous === undefined || previous.index < invoke.index) lastCompleted.set(queue, invoke);
  }
  return violations;
}

function describe(invoke: Op): string {
  const id = invoke.value?.wrId;
  return `${invoke.process}'s ${String(invoke.value?.opcode ?? invoke.f)}${id === undefined ? '' : ` wr ${String(id)}`} (op ${invoke.index})`;
}
