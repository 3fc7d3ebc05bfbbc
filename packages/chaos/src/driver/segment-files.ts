import * as fs from 'node:fs';
import * as path from 'node:path';

/**
 * The services' segment files (P2P_SHM_DIR), as the campaign's checkers
 * reach them: the BAR's bytes whatever its decode, and the files a leak
 * check looks through. Under the local driver they are this host's tmpfs;
 * under compose they live in the project's volume, read through the
 * gateway container that mounts it.
 */
export interface SegmentFiles {
  /** `length` bytes of segment `name` from `offset`. */
  read(name: string, offset: number, length: number): Promise<Buffer>;
  /** The segment files' names (dot files, the locks and tokens, left out). */
  list(): Promise<string[]>;
}

/** The segment files of a directory this process shares with the services. */
export function localSegmentFiles(dir: string): SegmentFiles {
  return {
    async read(name, offset, length) {
      const out = Buffer.alloc(length);
      const fd = fs.openSync(path.join(dir, path.basename(name)), 'r');
      try {
        fs.readSync(fd, out, 0, length, offset);
      } finally {
        fs.closeSync(fd);
      }
      return out;
    },
    async list() {
      return fs
        .readdirSync(dir, { withFileTypes: true })
        .filter((d) => d.isFile() && !d.name.startsWith('.'))
        .map((d) => d.name);
    },
  };
}
