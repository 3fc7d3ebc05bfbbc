import * as fs from 'node:fs';

/**
 * Mocha hooks giving every test a fresh directory under /dev/shm (tmpfs, like
 * the real segment directory), removed afterwards. Returns the accessor.
 */
export function useTempShmDir(): () => string {
  let dir: string | undefined;
  beforeEach(() => {
    dir = fs.mkdtempSync('/dev/shm/dmabuf-registry-test-');
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
