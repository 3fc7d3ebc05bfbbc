import pino from 'pino';
import { shutdownOnSignals } from '@p2p/server';
import { startStack } from './stack';

const logger = pino({ level: process.env.LOG_LEVEL ?? 'info', base: { service: 'stack' } });

startStack().then(
  (stack) => {
    logger.info({ services: stack.servers.map((s) => ({ name: s.name, port: s.port, metricsPort: s.metricsPort })) }, 'stack serving');
    shutdownOnSignals((reason) => stack.shutdown(reason), logger);
  },
  (error: unknown) => {
    logger.fatal({ err: error }, 'stack failed to start');
    process.exit(1);
  },
);
