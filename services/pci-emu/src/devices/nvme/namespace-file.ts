import * as fs from 'node:fs';
import * as path from 'node:path';
import { errno, ErrnoError, isErrnoName } from '@p2p/errno';
import { checkNamespaceGeometry, checkRange, type NamespaceStore, viewsLength } from './namespace-store';

/** The kernel's UIO_MAXIOV: the most iovecs one readv/writev takes. */
const IOV_MAX = 1024;
/** Write Zeroes writes at most this much per write(2). */
const ZERO_CHUNK = 1024 * 1024;
const NAME = /^[A-Za-z0-9][A-Za-z0-9._-]*$/;

/** An fs error as the ErrnoError the controller reports as a media error. */
function asErrno(error: unknown, what: string): ErrnoError {
  if (error instanceof ErrnoError) return error;
  const code = (error as NodeJS.ErrnoException).code;
  return errno(code !== undefined && isErrnoName(code) ? code : 'EIO', `${what}: ${(error as Error).message}`);
}

/**
 * A namespace in a file of a data directory, `<name>.img`, sized blocks x
 * blockSize with ftruncate (sparse: unwritten blocks cost no disk and read
 * 0). It outlives the process: opening finds the file of an earlier run
 * and keeps its data, and refuses one of another size (EINVAL) rather than
 * cutting or growing someone's disk. Data moves with preadv/pwritev straight
 * between the file and the command's views; Flush is fsync.
 */
export class FileNamespaceStore implements NamespaceStore {
  #fd: number | undefined;

  private constructor(
    readonly path: string,
    fd: number,
    readonly blocks: number,
    readonly blockSize: number,
  ) {
    this.#fd = fd;
  }

  /** Opens `<directory>/<name>.img`, creating it (sparse) if absent. */
  static open(directory: string, name: string, blocks: number, blockSize: number): FileNamespaceStore {
    if (!NAME.test(name)) throw errno('EINVAL', `namespace name ${JSON.stringify(name)} is not a plain file name`);
    const size = checkNamespaceGeometry(blocks, blockSize);
    const file = path.join(directory, `${name}.img`);
    let fd: number;
    try {
      fd = fs.openSync(file, 'r+');
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code !== 'ENOENT') throw asErrno(error, `open ${file}`);
      fd = FileNamespaceStore.#create(file, size);
      return new FileNamespaceStore(file, fd, blocks, blockSize);
    }
    const found = fs.fstatSync(fd).size;
    if (found !== size) {
      fs.closeSync(fd);
      throw errno('EINVAL', `${file} holds ${found} bytes, the namespace needs ${size} (${blocks} blocks of ${blockSize})`);
    }
    return new FileNamespaceStore(file, fd, blocks, blockSize);
  }

  static #create(file: string, size: number): number {
    try {
      const fd = fs.openSync(file, 'wx+');
      fs.ftruncateSync(fd, size);
      return fd;
    } catch (error) {
      throw asErrno(error, `create ${file}`);
    }
  }

  readv(byteOffset: number, views: readonly Buffer[]): void {
    this.#transfer('read', byteOffset, views);
  }

  writev(byteOffset: number, views: readonly Buffer[]): void {
    this.#transfer('write', byteOffset, views);
  }

  flush(): void {
    const fd = this.#open();
    try {
      fs.fsyncSync(fd);
    } catch (error) {
      throw asErrno(error, `fsync ${this.path}`);
    }
  }

  writeZeroes(byteOffset: number, length: number): void {
    const fd = this.#open();
    checkRange(this.blocks * this.blockSize, byteOffset, length);
    const zeroes = Buffer.alloc(Math.min(length, ZERO_CHUNK));
    try {
      for (let done = 0; done < length; ) {
        done += fs.writeSync(fd, zeroes, 0, Math.min(zeroes.length, length - done), byteOffset + done);
      }
    } catch (error) {
      throw asErrno(error, `write zeroes to ${this.path}`);
    }
  }

  /** Closes the file; every later access throws EBADF. */
  close(): void {
    if (this.#fd === undefined) return;
    fs.closeSync(this.#fd);
    this.#fd = undefined;
  }

  #open(): number {
    if (this.#fd === undefined) throw errno('EBADF', `namespace file ${this.path} is closed`);
    return this.#fd;
  }

  /** Moves every byte of `views` at `byteOffset`, IOV_MAX views per call, resuming after a short transfer. */
  #transfer(direction: 'read' | 'write', byteOffset: number, views: readonly Buffer[]): void {
    const fd = this.#open();
    checkRange(this.blocks * this.blockSize, byteOffset, viewsLength(views));
    const pending = views.filter((view) => view.length > 0);
    let first = 0;
    let position = byteOffset;
    try {
      while (first < pending.length) {
        const batch = pending.slice(first, first + IOV_MAX);
        const done = direction === 'read' ? fs.readvSync(fd, batch, position) : fs.writevSync(fd, batch, position);
        if (done === 0) throw errno('EIO', `${direction} of ${this.path} at ${position} moved no byte`);
        position += done;
        for (let skip = done; skip > 0; ) {
          const head = pending[first]!;
          if (head.length <= skip) {
            skip -= head.length;
            first++;
          } else {
            pending[first] = head.subarray(skip);
            skip = 0;
          }
        }
      }
    } catch (error) {
      throw asErrno(error, `${direction} ${this.path}`);
    }
  }
}
