import { randomUUID } from 'node:crypto';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { errno, ErrnoError } from '@p2p/errno';
import { fsCall, fsErrno } from './fs-errno';

/** The file in a segment directory that names the tmpfs it lives on. */
export const SHM_IDENTITY_FILE = '.p2p-shm-id';

// O_NOFOLLOW: a symlink planted in the directory must not lend it another identity.
const READ_FLAGS = fs.constants.O_RDONLY | fs.constants.O_NOFOLLOW;
const CREATE_FLAGS = fs.constants.O_WRONLY | fs.constants.O_CREAT | fs.constants.O_EXCL | fs.constants.O_NOFOLLOW;

/**
 * The identity of a tmpfs directory: the content of its `.p2p-shm-id` file,
 * created with a random UUID if missing. Two processes (or containers, each
 * with its own mount path) that read the same id see the same files, so one
 * can map segments the other names; a path string cannot tell that.
 *
 * Creation is atomic and race-safe: the UUID is written to a private
 * temporary file (O_EXCL, mode 0600) that is then hard-linked to the final
 * name. link(2) never replaces an existing name, so exactly one creator wins,
 * the file is never seen empty or half-written, and a loser (EEXIST) reads
 * the winner's id.
 */
export function shmIdentity(dir: string): string {
  const file = path.join(dir, SHM_IDENTITY_FILE);
  const existing = readIdentity(file);
  if (existing !== undefined) return existing;
  const id = randomUUID();
  const temporary = path.join(dir, `${SHM_IDENTITY_FILE}.${id}.tmp`);
  const fd = fsCall(() => fs.openSync(temporary, CREATE_FLAGS, 0o600), `create ${temporary}`);
  try {
    try {
      // The umask may have narrowed the mode; state it exactly.
      fs.fchmodSync(fd, 0o600);
      fs.writeFileSync(fd, `${id}\n`);
    } finally {
      fs.closeSync(fd);
    }
    fs.linkSync(temporary, file);
    return id;
  } catch (err) {
    if (!(err instanceof Error && 'code' in err && err.code === 'EEXIST')) throw fsErrno(err, `create ${file}`);
    const winner = readIdentity(file);
    if (winner === undefined) throw errno('EIO', `${file} vanished right after another process created it`);
    return winner;
  } finally {
    fsCall(() => fs.unlinkSync(temporary), `unlink ${temporary}`);
  }
}

/** The id in `file`, or undefined if there is no such file. */
function readIdentity(file: string): string | undefined {
  let content: string;
  try {
    const fd = fsCall(() => fs.openSync(file, READ_FLAGS), `open ${file}`);
    try {
      if (!fsCall(() => fs.fstatSync(fd), `fstat ${file}`).isFile()) throw errno('EINVAL', `${file} is not a regular file`);
      content = fsCall(() => fs.readFileSync(fd, 'utf8'), `read ${file}`);
    } finally {
      fs.closeSync(fd);
    }
  } catch (err) {
    if (err instanceof ErrnoError && err.errno === 'ENOENT') return undefined;
    throw err;
  }
  const id = content.trim();
  if (id === '' || /\s/.test(id)) throw errno('EINVAL', `${file} holds no identity (${JSON.stringify(content)})`);
  return id;
}
