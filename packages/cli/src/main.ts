import { CommanderError } from 'commander';
import { ErrnoError } from '@p2p/errno';
import { PeerError } from '@p2p/rpc';
import { buildProgram } from './program';

/** Exit statuses: 0 done, 1 the operation failed (an errno), 2 the command line was wrong. */
export const EXIT_FAILED = 1;
export const EXIT_USAGE = 2;

async function main(argv: string[]): Promise<number> {
  const program = buildProgram();
  try {
    await program.parseAsync(argv);
    return 0;
  } catch (error) {
    if (error instanceof CommanderError) return error.exitCode === 0 ? 0 : EXIT_USAGE;
    if (error instanceof ErrnoError) {
      process.stderr.write(`p2p: ${error.message}\n`);
      // An argument refused here, before any call: the command line was wrong. A service's answer: the operation failed.
      return error.errno === 'EINVAL' && !(error instanceof PeerError) ? EXIT_USAGE : EXIT_FAILED;
    }
    process.stderr.write(`p2p: ${error instanceof Error ? error.message : String(error)}\n`);
    return EXIT_FAILED;
  }
}

main(process.argv).then((code) => {
  process.exitCode = code;
});
