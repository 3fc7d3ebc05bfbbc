import type { RegistryFile } from './registry-file';

/** 0, 1 and 2 are stdin, stdout and stderr in a real process: never handed out. */
export const FIRST_FD = 3;

/**
 * One process's fd table (struct files_struct). New fds take the lowest free
 * number, as get_unused_fd_flags() does; `#nextFd` is the kernel's next_fd
 * hint (every fd in [FIRST_FD, nextFd) is in use), so installing stays cheap
 * in a table of thousands.
 */
export class FdTable {
  readonly #fds = new Map<number, RegistryFile>();
  #nextFd = FIRST_FD;

  /** fd_install() at the lowest free number; the caller has taken the reference the fd holds. */
  install(file: RegistryFile): number {
    let fd = this.#nextFd;
    while (this.#fds.has(fd)) fd++;
    this.#fds.set(fd, file);
    this.#nextFd = fd + 1;
    return fd;
  }

  get(fd: number): RegistryFile | undefined {
    return this.#fds.get(fd);
  }

  /** Takes the fd out of the table (file_close_fd()); the caller drops the reference it held. */
  remove(fd: number): RegistryFile | undefined {
    const file = this.#fds.get(fd);
    if (file === undefined) return undefined;
    this.#fds.delete(fd);
    // __put_unused_fd(): a freed fd below the hint is the new lowest free one.
    if (fd < this.#nextFd) this.#nextFd = fd;
    return file;
  }

  /** Every [fd, file], lowest fd first. */
  entries(): [number, RegistryFile][] {
    return [...this.#fds.entries()].sort(([a], [b]) => a - b);
  }
}
