import type { Op } from '../history';
import type { Violation } from './violation';

/**
 * Nothing leaked: the `leak-check` at the end lists, under each resource
 * kind it looked at (fds, attachments, mrs, segments, buffers, processes),
 * what is still there though every workload process has exited. Each left
 * over is a violation.
 */
export function checkLeaks(ops: readonly Op[]): Violation[] {
  const violations: Violation[] = [];
  for (const op of ops) {
    if (op.f !== 'leak-check' || op.type !== 'ok') continue;
    for (const [kind, left] of Object.entries(op.value ?? {})) {
      if (!Array.isArray(left)) continue;
      for (const item of left) violations.push({ checker: 'leak', message: `${kind} left after the run: ${typeof item === 'string' ? item : JSON.stringify(item)}`, ops: [op.index], time: op.time });
    }
  }
  return violations;
}
