import * as path from 'node:path';
import pino from 'pino';
import { ADMIN_TOKEN_ENV, ADMIN_TOKEN_FILE } from '@p2p/auth';
import { hostLayout } from '@p2p/hosts';
import { resolveShmDir } from '@p2p/shm';
import { shutdownOnSignals } from '@p2p/server';
import { startManyHosts } from './many-hosts';
import { parseStackOptions, type StackOptions, USAGE } from './options';
import { startStack } from './stack';

const logger = pino({ level: process.env.LOG_LEVEL ?? 'info', base: { service: 'stack' } });

/** One host in this process: `npm start`, or host `hostIndex` of many. */
async function oneHost(options: StackOptions): Promise<void> {
  const stack = await startStack(process.env, hostLayout(options.hostIndex ?? 0, options.bases));
  logger.info({ services: stack.servers.map((s) => ({ name: s.name, port: s.port, metricsPort: s.metricsPort })) }, 'stack serving');
  const tokenFile = path.join(resolveShmDir(), ADMIN_TOKEN_FILE);
  logger.info(
    { adminTokenFile: process.env[ADMIN_TOKEN_ENV] ? `$${ADMIN_TOKEN_ENV}` : tokenFile },
    `administrator credential: send "authorization: Bearer <token>", the token being the content of ${tokenFile} unless ${ADMIN_TOKEN_ENV} is set`,
  );
  shutdownOnSignals((reason) => stack.shutdown(reason), logger);
  // A host of many stops with the process that started it, however that one ended.
  if (options.hostIndex !== undefined) process.once('disconnect', () => process.kill(process.pid, 'SIGTERM'));
}

/** `--hosts N`: N hosts, each its own process; any one dying stops them all, with exit status 1. */
async function manyHosts(count: number, options: StackOptions): Promise<void> {
  const hosts = await startManyHosts({ count, bases: options.bases, env: process.env, logger });
  logger.info(
    { hostsFile: hosts.hostsFile, hosts: hosts.hosts.map((h) => ({ name: h.name, pid: h.pid, shmDir: h.shmDir, pciEmu: h.services.pciEmu, nics: h.nics.map((n) => `${n.name} ${n.gid}`) })) },
    `${count} hosts serving; \`p2p topology\` shows them (it reads ${hosts.hostsFile})`,
  );
  shutdownOnSignals((reason) => hosts.stop(reason), logger);
  const death = await hosts.died;
  await hosts.stop(`${death.host} exited`);
  process.exit(1);
}

async function main(): Promise<void> {
  let options: StackOptions;
  try {
    options = parseStackOptions(process.argv.slice(2));
  } catch (error) {
    // A wrong command line: exit status 2, as the p2p command's, before anything starts.
    process.stderr.write(`${(error as Error).message}\n${USAGE}\n`);
    process.exit(2);
  }
  if (options.help) {
    process.stdout.write(`${USAGE}\n`);
    return;
  }
  await (options.hosts !== undefined && options.hostIndex === undefined ? manyHosts(options.hosts, options) : oneHost(options));
}

main().catch((error: unknown) => {
  logger.fatal({ err: error }, 'stack failed to start');
  process.exit(1);
});
