import type { Command } from 'commander';
import { Clients } from './clients';
import { toJson } from './format';
import { type Invocation, invocationOf } from './invocation';
import { resolveTarget } from './target';

/** The global options every command inherits. */
export interface GlobalOptions {
  readonly target?: string;
  readonly tokenFile?: string;
  readonly json?: boolean;
  readonly session?: string;
}

/** What a command's action gets: its clients and how to print. */
export interface Context {
  readonly clients: Clients;
  /** This run: its arguments, its output, the model process it acts as inside a session. */
  readonly invocation: Invocation;
  /** The global options as given. */
  readonly global: GlobalOptions;
  readonly json: boolean;
  /** Prints `value` as JSON under --json, else the lines `text` makes. */
  print(value: unknown, text: () => string | string[]): void;
}

/**
 * Wraps a command's action: builds the context from the global options,
 * closes the clients after, and lets errors reach main's handler.
 */
export function action<Options = Record<string, never>>(run: (context: Context, args: string[], options: Options) => Promise<void>): (...args: unknown[]) => Promise<void> {
  return async (...args: unknown[]) => {
    const command = args[args.length - 1] as Command;
    const options = command.optsWithGlobals<GlobalOptions>();
    const clients = new Clients(resolveTarget(options));
    const json = options.json === true;
    const invocation = invocationOf(command);
    const context: Context = {
      clients,
      invocation,
      global: options,
      json,
      print(value, text) {
        if (json) {
          invocation.stdout.write(`${toJson(value)}\n`);
          return;
        }
        const lines = text();
        invocation.stdout.write(`${Array.isArray(lines) ? lines.join('\n') : lines}\n`);
      },
    };
    try {
      await run(context, args.slice(0, -2).flat() as string[], args[args.length - 2] as Options);
    } finally {
      clients.close();
    }
  };
}
