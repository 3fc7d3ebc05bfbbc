import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';

/** A fresh segment directory on tmpfs (the OS temp dir where /dev/shm is missing). */
export function tempShmDir(prefix = 'p2p-test-'): string {
  return fs.mkdtempSync(path.join(fs.existsSync('/dev/shm') ? '/dev/shm' : os.tmpdir(), prefix));
}

/**
 * Registers mocha hooks that give every test a fresh directory under
 * /dev/shm (tmpfs, like the real segment directory) and remove it afterwards.
 * Returns an accessor for the current test's directory.
 */
export function useTempShmDir(): () => string {
  let dir: string | undefined;
  beforeEach(() => {
    dir = tempShmDir();
  });
  afterEach(() => {
    if (dir !== undefined) fs.rmSync(dir, { recursive: true, force: true });
    dir = undefined;
  });
  return () => {
    if (dir === undefined) throw new Error('useTempShmDir: no test is running');
    return dir;
  };
}
