import type { Logger } from 'pino';

/**
 * SIGTERM or SIGINT shuts every server down gracefully, then exits 0; a
 * second signal during the drain exits at once with 1.
 */
export function shutdownOnSignals(stop: (reason: string) => Promise<void>, logger: Logger): void {
  let draining = false;
  const onSignal = (signal: NodeJS.Signals): void => {
    if (draining) {
      logger.warn({ signal }, 'second signal during drain; exiting now');
      process.exit(1);
    }
    draining = true;
    stop(`received ${signal}`).then(
      () => process.exit(0),
      (error: unknown) => {
        logger.error({ err: error }, 'shutdown failed');
        process.exit(1);
      },
    );
  };
  process.on('SIGTERM', onSignal);
  process.on('SIGINT', onSignal);
}
