import { errno } from '@p2p/errno';

const UNITS_MS = { ms: 1, s: 1000, m: 60_000 } as const;

/** A duration as users type it: 500ms, 10s, 2m, or seconds without a unit. EINVAL otherwise. */
export function parseDuration(text: string): number {
  const match = /^(\d+(?:\.\d+)?)(ms|s|m)?$/.exec(text.trim());
  if (match === null) throw errno('EINVAL', `duration ${JSON.stringify(text)}: a number with ms, s or m (10s)`);
  const ms = Number(match[1]) * UNITS_MS[(match[2] ?? 's') as keyof typeof UNITS_MS];
  if (ms <= 0) throw errno('EINVAL', `duration ${text} is not positive`);
  return ms;
}
