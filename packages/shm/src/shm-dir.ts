import * as fs from 'node:fs';
import * as path from 'node:path';
import { errno } from '@p2p/errno';
import { fsCall } from './fs-errno';

export const DEFAULT_SHM_DIR = '/dev/shm/p2p-dmabuf';
export const SHM_DIR_ENV = 'P2P_SHM_DIR';

/**
 * The directory holding segment files: `$P2P_SHM_DIR` if set and non-empty,
 * else /dev/shm/p2p-dmabuf. It is created if missing with mode 0700, since the
 * segments are the model's device memory and no other user should map them.
 * An existing directory is used as found; an existing non-directory is EEXIST.
 */
export function resolveShmDir(env: NodeJS.ProcessEnv = process.env): string {
  const configured = env[SHM_DIR_ENV];
  const dir = configured === undefined || configured === '' ? DEFAULT_SHM_DIR : configured;
  if (!path.isAbsolute(dir)) {
    throw errno('EINVAL', `${SHM_DIR_ENV}=${dir} must be an absolute path`);
  }
  const created = fsCall(() => fs.mkdirSync(dir, { recursive: true, mode: 0o700 }), `mkdir ${dir}`);
  if (created !== undefined) {
    // mkdir's mode is filtered by the umask; chmod states the intent exactly.
    fsCall(() => fs.chmodSync(dir, 0o700), `chmod ${dir}`);
  }
  return path.normalize(dir);
}
