import { errno } from '@p2p/errno';

/**
 * The session socket's protocol: one JSON object per line each way. A
 * request runs a command line in the session's process, asks what the
 * session is, or stops it.
 */
export type SessionRequest = { readonly run: readonly string[] } | { readonly info: true } | { readonly stop: true };

export interface RunResult {
  readonly code: number;
  readonly stdout: string;
  readonly stderr: string;
}

export interface SessionInfo {
  readonly name: string;
  /** The model process's pid (the registry's), not the daemon's. */
  readonly pid: number;
  readonly daemonPid: number;
  readonly startedAt: string;
}

export type SessionResponse = { readonly result: RunResult } | { readonly info: SessionInfo } | { readonly stopped: true } | { readonly error: string };

/** A request line is at most this long, and a command line at most MAX_ARGS words: sizes bounded up front. */
export const MAX_LINE_BYTES = 64 * 1024;
export const MAX_ARGS = 256;
/** An answer carries a command's whole output (a BAR dump, say): bounded too. */
export const MAX_ANSWER_BYTES = 64 * 1024 * 1024;

/** Parses and checks one request line; EINVAL for anything else. */
export function parseRequest(line: string): SessionRequest {
  let value: unknown;
  try {
    value = JSON.parse(line);
  } catch {
    throw errno('EINVAL', 'a session request is one JSON object per line');
  }
  if (typeof value !== 'object' || value === null) throw errno('EINVAL', 'a session request is a JSON object');
  const request = value as Record<string, unknown>;
  if (Array.isArray(request.run)) {
    if (request.run.length > MAX_ARGS || !request.run.every((word) => typeof word === 'string')) throw errno('EINVAL', `run takes at most ${MAX_ARGS} strings`);
    return { run: request.run as string[] };
  }
  if (request.info === true) return { info: true };
  if (request.stop === true) return { stop: true };
  throw errno('EINVAL', 'a session request is {"run": [...]}, {"info": true} or {"stop": true}');
}
