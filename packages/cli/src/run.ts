import { CommanderError } from 'commander';
import { ErrnoError } from '@p2p/errno';
import { PeerError } from '@p2p/rpc';
import { ExitStatus, type Invocation } from './invocation';
import { buildProgram } from './program';

/** Exit statuses: 0 done, 1 the operation failed (an errno), 2 the command line was wrong. */
export const EXIT_FAILED = 1;
export const EXIT_USAGE = 2;

/**
 * Runs one `p2p` command line (`argv` as process.argv: node, script, args)
 * and returns its exit status. Errors are written to the invocation's
 * stderr as `p2p: ERRNO: detail`.
 */
export async function runCli(invocation: Invocation): Promise<number> {
  const program = buildProgram(invocation);
  try {
    await program.parseAsync([...invocation.argv]);
    return 0;
  } catch (error) {
    if (error instanceof ExitStatus) return error.code;
    if (error instanceof CommanderError) return error.exitCode === 0 ? 0 : EXIT_USAGE;
    if (error instanceof ErrnoError) {
      invocation.stderr.write(`p2p: ${error.message}\n`);
      // An argument refused here, before any call: the command line was wrong. A service's answer: the operation failed.
      return error.errno === 'EINVAL' && !(error instanceof PeerError) ? EXIT_USAGE : EXIT_FAILED;
    }
    invocation.stderr.write(`p2p: ${error instanceof Error ? error.message : String(error)}\n`);
    return EXIT_FAILED;
  }
}
