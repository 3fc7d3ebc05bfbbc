import type { Command } from 'commander';
import type { ModelProcess } from './session/model-process';

/** Where a run of the command writes: the terminal, or a buffer a session sends back. */
export interface Output {
  write(text: string): void;
}

/**
 * One run of `p2p`: its arguments, its output, and the model process it acts
 * as when it runs inside a session (the background daemon or the shell).
 */
export interface Invocation {
  readonly argv: readonly string[];
  readonly stdout: Output;
  readonly stderr: Output;
  /** Set inside a session: process commands act as it instead of asking the session daemon. */
  readonly process?: ModelProcess;
}

const invocations = new WeakMap<Command, Invocation>();

export function bindInvocation(program: Command, invocation: Invocation): void {
  invocations.set(program, invocation);
}

/** The invocation a command runs in: its root program's. */
export function invocationOf(command: Command): Invocation {
  let root = command;
  while (root.parent !== null) root = root.parent;
  const invocation = invocations.get(root);
  if (invocation === undefined) throw new Error(`command ${command.name()} has no invocation bound`);
  return invocation;
}

/** Ends a run with this exit status, having printed what it had to (a forwarded command's own status). */
export class ExitStatus extends Error {
  constructor(readonly code: number) {
    super(`exit status ${code}`);
  }
}
