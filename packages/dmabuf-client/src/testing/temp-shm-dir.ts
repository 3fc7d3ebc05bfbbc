import * as fs from 'node:fs';

/**
 * Registers mocha hooks that give every test a fresh directory under
 * /dev/shm (tmpfs, like a real segment directory) and remove it afterwards.
 * Returns an accessor for the current test's directory.
 */
export function useTempShmDir(): () => string {
  let dir: string | undefined;
  beforeEach(() => {
    dir = fs.mkdtempSync('/dev/shm/p2p-dmabuf-client-test-');
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
