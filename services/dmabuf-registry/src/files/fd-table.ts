import type { RegistryFile } from './registry-file';

/** 0, 1 and 2 are stdin, stdout and stderr in a real process: never handed out. */
export const FIRST_FD = 3;

/**
 * One process's fd table (struct files_struct). New fds take the lowest free
 * number, as get_unused_fd_flags() does, and an fd is never overwritten (no
 * dup2): what a number names changes only by a close. `#nextFd` is the
 * kernel's next_fd hint (every fd in [FIRST_FD, nextFd) is in use), so
 * installing stays cheap in a table of thousands.
 *
 * A removed fd's number stays taken until its close is done (putUnused):
 * the file's owner hears of the close first, so an owner remembering what
 * the number named never sees it name another file meanwhile.
 */
export class FdTable {
  readonly #fds = new Map<number, RegistryFile>();
  /** Numbers taken out of the table whose close is still running. */
  readonly #closing = new Set<number>();
  #nextFd = FIRST_FD;

  /** fd_install() at the lowest free number; the caller has taken the reference the fd holds. */
  install(file: RegistryFile): number {
    let fd = this.#nextFd;
    while (this.#fds.has(fd) || this.#closing.has(fd)) fd++;
    this.#fds.set(fd, file);
    this.#nextFd = fd + 1;
    return fd;
  }

  get(fd: number): RegistryFile | undefined {
    return this.#fds.get(fd);
  }

  /**
   * Takes the fd out of the table (file_close_fd()): from now on it is
   * EBADF, but its number is not free until putUnused(fd). The caller drops
   * the reference it held.
   */
  remove(fd: number): RegistryFile | undefined {
    const file = this.#fds.get(fd);
    if (file === undefined) return undefined;
    this.#fds.delete(fd);
    this.#closing.add(fd);
    return file;
  }

  /** The close of a removed fd is done: its number is free again. */
  putUnused(fd: number): void {
    if (!this.#closing.delete(fd)) return;
    // __put_unused_fd(): a freed fd below the hint is the new lowest free one.
    if (fd < this.#nextFd) this.#nextFd = fd;
  }

  /** Every [fd, file], lowest fd first. */
  entries(): [number, RegistryFile][] {
    return [...this.#fds.entries()].sort(([a], [b]) => a - b);
  }
}
