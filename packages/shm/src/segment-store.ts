import * as fs from 'node:fs';
import * as path from 'node:path';
import { errno } from '@p2p/errno';
import { type SegmentInfo, listSegmentFiles } from './accounting';
import { fsCall, fsErrno } from './fs-errno';
import { DEFAULT_CHUNK_SIZE, MAX_MAP_BYTES, PAGE_SIZE } from './limits';
import { Segment, checkSegmentSize } from './segment';
import { validateSegmentName } from './segment-name';

export interface SegmentStoreOptions {
  /** An existing directory, normally resolveShmDir(). */
  readonly dir: string;
  /**
   * The largest segment file, default 1 GiB (also the most that may be mapped
   * at once). Smaller values let tests cross chunk boundaries cheaply; it must
   * be a multiple of the page size so every chunk maps at a page boundary.
   */
  readonly chunkSize?: number;
}

// O_NOFOLLOW: a symlink planted in the directory must not redirect a segment elsewhere.
const OPEN_FLAGS = fs.constants.O_RDWR | fs.constants.O_NOFOLLOW;
const CREATE_FLAGS = OPEN_FLAGS | fs.constants.O_CREAT | fs.constants.O_EXCL;

/** The segment files of one directory, by name. */
export class SegmentStore {
  readonly dir: string;
  readonly chunkSize: number;

  constructor(opts: SegmentStoreOptions) {
    const chunkSize = opts.chunkSize ?? DEFAULT_CHUNK_SIZE;
    if (!Number.isSafeInteger(chunkSize) || chunkSize <= 0 || chunkSize % PAGE_SIZE !== 0) {
      throw errno('EINVAL', `chunk size ${chunkSize} is not a positive multiple of the page size ${PAGE_SIZE}`);
    }
    if (chunkSize > MAX_MAP_BYTES) {
      throw errno('EOVERFLOW', `chunk size ${chunkSize} exceeds ${MAX_MAP_BYTES}, the most mapped at once`);
    }
    const dir = path.resolve(opts.dir);
    if (!fsCall(() => fs.statSync(dir), `stat ${dir}`).isDirectory()) {
      throw errno('EINVAL', `${dir} is not a directory`);
    }
    this.dir = dir;
    this.chunkSize = chunkSize;
  }

  /** The file path of a segment; EINVAL if the name is not a valid segment name. */
  pathOf(name: string): string {
    return path.join(this.dir, validateSegmentName(name));
  }

  /** Creates a sparse segment of `size` bytes, mode 0600. EEXIST if the name is taken. */
  create(name: string, size: number): Segment {
    const file = this.pathOf(name);
    checkSegmentSize(size, this.chunkSize, `create ${name}`);
    const fd = fsCall(() => fs.openSync(file, CREATE_FLAGS, 0o600), `create ${file}`);
    try {
      // The umask may have narrowed the mode; state it exactly.
      fs.fchmodSync(fd, 0o600);
      fs.ftruncateSync(fd, size);
    } catch (err) {
      fs.closeSync(fd);
      fs.unlinkSync(file);
      throw fsErrno(err, `size ${file} to ${size}`);
    }
    return new Segment({ name, path: file, fd, size, maxSize: this.chunkSize });
  }

  /** Opens an existing segment. ENOENT if missing, EOVERFLOW if larger than the chunk size. */
  open(name: string): Segment {
    const file = this.pathOf(name);
    const fd = fsCall(() => fs.openSync(file, OPEN_FLAGS), `open ${file}`);
    let size: number;
    try {
      const stat = fsCall(() => fs.fstatSync(fd), `fstat ${file}`);
      if (!stat.isFile()) throw errno('EINVAL', `${file} is not a regular file`);
      checkSegmentSize(stat.size, this.chunkSize, `open ${name}`);
      size = stat.size;
    } catch (err) {
      fs.closeSync(fd);
      throw err;
    }
    return new Segment({ name, path: file, fd, size, maxSize: this.chunkSize });
  }

  /** Removes a segment's file. Open segments and their mappings stay valid until closed and collected. */
  unlink(name: string): void {
    const file = this.pathOf(name);
    fsCall(() => fs.unlinkSync(file), `unlink ${file}`);
  }

  /** Size and allocation of one segment without opening it. ENOENT if missing. */
  stat(name: string): SegmentInfo {
    const file = this.pathOf(name);
    const stat = fsCall(() => fs.lstatSync(file), `stat ${file}`);
    if (!stat.isFile()) throw errno('EINVAL', `${file} is not a regular file`);
    return { name, size: stat.size, allocatedBytes: stat.blocks * 512 };
  }

  /** Every segment file in the directory, sorted by name. */
  list(): SegmentInfo[] {
    return listSegmentFiles(this.dir);
  }
}
