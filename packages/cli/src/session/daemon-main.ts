import pino from 'pino';
import { resolveTarget } from '../target';
import { ModelProcess } from './model-process';
import { SessionServer } from './session-server';
import { checkSessionName, logPath, socketPath } from './session-paths';

/**
 * A background session (`p2p session start`): a model process that lives
 * until `p2p session stop`, serving command lines on its socket. It says
 * `{"ready": {...}}` on stdout once it serves, then writes only to its log
 * file. Arguments: the session's name, then optionally the target host and
 * the token file the starting command was given.
 */
async function daemon(name: string, target: string | undefined, tokenFile: string | undefined): Promise<void> {
  const logger = pino({ base: { session: name } }, pino.destination({ dest: logPath(name), append: true, sync: true }));
  const process_ = await ModelProcess.open(resolveTarget({ target, tokenFile }), `p2p-session-${name}`);
  let server: SessionServer | undefined;
  const exit = async (code: number, why: string): Promise<void> => {
    logger.info({ code }, `session ends: ${why}`);
    await server?.close();
    await process_.close().catch(() => undefined);
    process.exit(code);
  };
  process_.session.on('lost', (error) => void exit(1, `the registry session was lost (${error.message})`));
  const info = { name, pid: process_.pid, daemonPid: process.pid, startedAt: new Date().toISOString() };
  const stop = { before: () => process_.close(), after: () => void exit(0, 'stopped') };
  server = new SessionServer(process_, info, socketPath(name), stop);
  await server.listen();
  for (const signal of ['SIGTERM', 'SIGINT', 'SIGHUP'] as const) process.once(signal, () => void exit(0, signal));
  logger.info(info, 'session serving');
  process.stdout.write(`${JSON.stringify({ ready: info })}\n`);
}

const [name = '', target, tokenFile] = process.argv.slice(2).map((arg) => (arg === '' ? undefined : arg));
daemon(checkSessionName(name ?? ''), target, tokenFile).catch((error: unknown) => {
  process.stderr.write(`${error instanceof Error ? error.message : String(error)}\n`);
  process.exit(1);
});
