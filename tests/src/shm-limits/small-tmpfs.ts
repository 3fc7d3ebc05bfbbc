import { spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';

/** The size of the test tmpfs: small enough to fill in one write. */
export const SMALL_TMPFS_BYTES = 1024 * 1024;

/**
 * Mocha hooks that mount a 1 MiB tmpfs for the suite and unmount it after
 * the suite, so its tests can fill a segment directory; each test must leave
 * it empty for the next. Mounting needs root (CAP_SYS_ADMIN): where it is
 * refused, the suite is skipped with the reason printed. Returns the mount
 * point.
 */
export function useSmallTmpfs(): () => string {
  let mountPoint: string | undefined;
  before(function () {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'p2p-small-tmpfs-'));
    const mount = spawnSync('mount', ['-t', 'tmpfs', '-o', `size=${SMALL_TMPFS_BYTES},mode=0700`, 'tmpfs', dir], { encoding: 'utf8' });
    if (mount.status !== 0) {
      fs.rmdirSync(dir);
      const reason = (mount.stderr || mount.error?.message || `exit status ${mount.status}`).replace(/\s+/g, ' ').trim();
      console.warn(`      skipped "${this.test?.parent?.fullTitle()}": mounting a small tmpfs is not permitted here (${reason})`);
      this.skip();
    }
    mountPoint = dir;
  });
  after(() => {
    if (mountPoint === undefined) return;
    // Lazy: a mapping still alive keeps the mount busy until it is collected.
    spawnSync('umount', ['-l', mountPoint]);
    fs.rmdirSync(mountPoint);
    mountPoint = undefined;
  });
  return () => {
    if (mountPoint === undefined) throw new Error('useSmallTmpfs: the suite has no tmpfs');
    return mountPoint;
  };
}
