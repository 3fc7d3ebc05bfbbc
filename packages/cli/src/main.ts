import { runCli } from './run';

runCli({ argv: process.argv, stdout: process.stdout, stderr: process.stderr }).then((code) => {
  process.exitCode = code;
});
