import type { Op } from '../history';
import type { Violation } from './violation';

/**
 * No byte in a BAR after its revoke returned: a `revoke` that succeeded
 * records `value.digest`, the BAR range as the platform read it right after
 * the revoke returned; the `unrevoke` of the same `value.bar` records the
 * digest right before decode comes back. Anything that reached the BAR in
 * between came through a mapping the revoke should have torn down.
 */
export function checkRevokes(ops: readonly Op[]): Violation[] {
  const violations: Violation[] = [];
  const revoked = new Map<string, Op>();
  for (const op of ops) {
    if (op.f === 'revoke' && op.type === 'ok') revoked.set(String(op.value?.bar), op);
    if (op.f !== 'unrevoke' || op.type !== 'invoke') continue;
    const bar = String(op.value?.bar);
    const revoke = revoked.get(bar);
    if (revoke === undefined) continue;
    revoked.delete(bar);
    if (revoke.value?.digest !== op.value?.digest) {
      violations.push({
        checker: 'revoke',
        message: `${bar} changed while revoked: ${String(revoke.value?.digest)} when the revoke returned (op ${revoke.index}), ${String(op.value?.digest)} before decode came back (op ${op.index})`,
        ops: [op.index, revoke.index],
        time: op.time,
      });
    }
  }
  return violations;
}
