import * as path from 'node:path';
import pino from 'pino';
import { ADMIN_TOKEN_ENV, ADMIN_TOKEN_FILE } from '@p2p/auth';
import { resolveShmDir } from '@p2p/shm';
import { shutdownOnSignals } from '@p2p/server';
import { startStack } from './stack';

const logger = pino({ level: process.env.LOG_LEVEL ?? 'info', base: { service: 'stack' } });

startStack().then(
  (stack) => {
    logger.info({ services: stack.servers.map((s) => ({ name: s.name, port: s.port, metricsPort: s.metricsPort })) }, 'stack serving');
    const tokenFile = path.join(resolveShmDir(), ADMIN_TOKEN_FILE);
    logger.info(
      { adminTokenFile: process.env[ADMIN_TOKEN_ENV] ? `$${ADMIN_TOKEN_ENV}` : tokenFile },
      `administrator credential: send "authorization: Bearer <token>", the token being the content of ${tokenFile} unless ${ADMIN_TOKEN_ENV} is set`,
    );
    shutdownOnSignals((reason) => stack.shutdown(reason), logger);
  },
  (error: unknown) => {
    logger.fatal({ err: error }, 'stack failed to start');
    process.exit(1);
  },
);
