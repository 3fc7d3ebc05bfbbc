import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { errno } from '@p2p/errno';

/** The session a process command goes to unless `--session` or P2P_SESSION names another. */
export const DEFAULT_SESSION = 'default';

const NAME = /^[a-z0-9][a-z0-9_-]{0,31}$/;

/** EINVAL unless `name` is 1-32 of [a-z0-9_-]: it becomes a file name. */
export function checkSessionName(name: string): string {
  if (!NAME.test(name)) throw errno('EINVAL', `session name ${JSON.stringify(name)}: 1 to 32 of a-z, 0-9, _ and -, starting with a letter or digit`);
  return name;
}

/**
 * The directory of this user's session sockets: P2P_SESSION_DIR, else
 * $XDG_RUNTIME_DIR/p2p-sessions, else p2p-sessions-<uid> in the temp
 * directory; mode 0700, since whoever reaches a socket acts as its process.
 */
export function sessionDir(env: NodeJS.ProcessEnv = process.env): string {
  const dir = env.P2P_SESSION_DIR || (env.XDG_RUNTIME_DIR ? path.join(env.XDG_RUNTIME_DIR, 'p2p-sessions') : path.join(os.tmpdir(), `p2p-sessions-${process.getuid?.() ?? 'user'}`));
  fs.mkdirSync(dir, { recursive: true, mode: 0o700 });
  const stat = fs.statSync(dir);
  if (process.getuid !== undefined && stat.uid !== process.getuid()) throw errno('EACCES', `${dir} belongs to uid ${stat.uid}, not to this user`);
  if ((stat.mode & 0o077) !== 0) fs.chmodSync(dir, 0o700);
  return dir;
}

export function socketPath(name: string, env: NodeJS.ProcessEnv = process.env): string {
  return path.join(sessionDir(env), `${checkSessionName(name)}.sock`);
}

export function logPath(name: string, env: NodeJS.ProcessEnv = process.env): string {
  return path.join(sessionDir(env), `${checkSessionName(name)}.log`);
}
