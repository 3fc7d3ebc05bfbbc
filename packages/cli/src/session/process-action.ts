import { action, type Context } from '../context';
import { ExitStatus } from '../invocation';
import type { ModelProcess } from './model-process';
import { askSession } from './session-client';
import { DEFAULT_SESSION, socketPath } from './session-paths';

/** The session a process command outside one goes to: --session, else P2P_SESSION, else "default". */
export function sessionName(context: Context): string {
  return context.global.session ?? (process.env.P2P_SESSION || DEFAULT_SESSION);
}

/**
 * A command that acts as a model process (open, export, close...): run in
 * the process when inside a session (the daemon or the shell); from a plain
 * command line, the whole command line goes to the session's daemon, whose
 * output and exit status become this run's.
 */
export function processAction<Options = Record<string, never>>(
  run: (context: Context, process: ModelProcess, args: string[], options: Options) => Promise<void>,
): (...args: unknown[]) => Promise<void> {
  return action<Options>(async (context, args, options) => {
    const inside = context.invocation.process;
    if (inside !== undefined) return run(context, inside, args, options);
    const name = sessionName(context);
    const response = await askSession(socketPath(name), name, { run: context.invocation.argv.slice(2) });
    if ('error' in response) throw new Error(`session ${name}: ${response.error}`);
    if (!('result' in response)) throw new Error(`session ${name} answered something else than a result`);
    context.invocation.stdout.write(response.result.stdout);
    context.invocation.stderr.write(response.result.stderr);
    if (response.result.code !== 0) throw new ExitStatus(response.result.code);
  });
}
