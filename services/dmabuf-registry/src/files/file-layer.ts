import { errno } from '@p2p/errno';
import { Process, type ImporterNotifier } from '../processes/process';
import { FdTransfers } from './fd-transfer';
import type { FileKind, RegistryFile } from './registry-file';

/** What an fd refers to. */
export interface ResolvedFd {
  readonly kind: FileKind;
  readonly fileId: number;
  /** The owner's name, also after it died. */
  readonly owner: string;
  readonly handle: string;
  readonly openFlags: number;
}

export interface FdInfo {
  readonly fd: number;
  readonly kind: FileKind;
  readonly fileId: number;
  readonly owner: string;
}

export interface ProcessInfo {
  readonly pid: number;
  readonly name: string;
  /** Lowest fd first. */
  readonly fds: FdInfo[];
}

/**
 * Processes, their fd tables, fds in flight between them, and the file
 * references all of those hold (fs/file.c, fs/file_table.c, SCM_RIGHTS).
 * The last reference's release is the caller's (`release`), awaited by
 * whoever dropped that reference.
 */
export class FileLayer {
  readonly #processes = new Map<number, Process>();
  readonly #transfers = new FdTransfers();
  readonly #release: (file: RegistryFile) => Promise<void>;
  #lastPid: number;
  #lastFileId = 0;

  /** @param firstPid the first pid handed out (pids are never reused within a registry). */
  constructor(release: (file: RegistryFile) => Promise<void>, firstPid = 1) {
    this.#lastPid = firstPid - 1;
    this.#release = release;
  }

  /** pids count up from firstPid and are never reused. */
  openProcess(name: string, notifier: ImporterNotifier | undefined): Process {
    if (typeof name !== 'string') throw errno('EINVAL', 'a process name must be a string');
    const process = new Process(++this.#lastPid, name, notifier);
    this.#processes.set(process.pid, process);
    return process;
  }

  has(pid: number): boolean {
    return this.#processes.has(pid);
  }

  /** ESRCH if no live process has the pid. */
  process(pid: number): Process {
    const process = this.#processes.get(pid);
    if (process === undefined) throw errno('ESRCH', `no process with pid ${pid}`);
    return process;
  }

  /** fget(): ESRCH for an unknown pid, EBADF for an fd the process does not hold. */
  fileAt(pid: number, fd: number): RegistryFile {
    const file = this.process(pid).fds.get(fd);
    if (file === undefined) throw errno('EBADF', `pid ${pid} holds no fd ${fd}`);
    return file;
  }

  /** The id the next file will get (the system heap names its segments after it before creating the file). */
  nextFileId(): number {
    return this.#lastFileId + 1;
  }

  /** A new file, holding one reference, installed at the lowest free fd of `process` (fd_install()). */
  create<F extends RegistryFile>(process: Process, make: (fileId: number) => F): { file: F; fd: number } {
    const file = make(++this.#lastFileId);
    return { file, fd: process.fds.install(file) };
  }

  /** dup(2): the lowest free fd, referring to the same file. */
  dup(pid: number, fd: number): number {
    const file = this.fileAt(pid, fd);
    file.get();
    return this.process(pid).fds.install(file);
  }

  /**
   * close_fd(): EBADF if not held (a second close of the same fd included).
   * Resolves once the file's owner heard of it (see #closed); until then the
   * fd is EBADF but its number is not handed out again.
   */
  async close(pid: number, fd: number): Promise<void> {
    const table = this.process(pid).fds;
    const file = table.remove(fd);
    if (file === undefined) throw errno('EBADF', `pid ${pid} holds no fd ${fd}`);
    try {
      await this.#closed(pid, fd, file);
    } finally {
      table.putUnused(fd);
    }
  }

  /** SCM_RIGHTS: the token holds its own reference, so closing the sender's fd keeps the file alive. */
  sendFd(pid: number, fd: number, toPid: number): string {
    const file = this.fileAt(pid, fd);
    this.process(toPid);
    file.get();
    return this.#transfers.send(file, pid, toPid);
  }

  /** receive_fd(): installs the token's reference at the lowest free fd. */
  receiveFd(pid: number, token: string): number {
    const process = this.process(pid);
    const file = this.#transfers.receive(token, pid);
    return process.fds.install(file);
  }

  resolveFd(pid: number, fd: number): ResolvedFd {
    const file = this.fileAt(pid, fd);
    return { kind: file.kind, fileId: file.fileId, owner: file.owner.name, handle: file.handle, openFlags: file.openFlags };
  }

  /** fput(): the last reference releases the file, once. */
  async put(file: RegistryFile): Promise<void> {
    if (file.put()) await this.#release(file);
  }

  /** do_exit() begins: the pid is gone from now on (ESRCH), and the process is marked dead. */
  beginExit(pid: number): Process {
    const process = this.process(pid);
    this.#processes.delete(pid);
    process.markExited();
    return process;
  }

  /**
   * exit_files(): closes every fd of an exiting process, lowest first, each
   * one's release or fdClosed awaited in turn, so every owner has forgotten
   * the process's fds before the exit completes.
   */
  async closeAll(process: Process): Promise<number> {
    const entries = process.fds.entries();
    for (const [fd, file] of entries) {
      process.fds.remove(fd);
      await this.#closed(process.pid, fd, file);
    }
    return entries.length;
  }

  /**
   * filp_close() of an fd taken out of its table: the last reference
   * releases the file; otherwise an owner that remembers fds (fdClosed) is
   * told that this one no longer names its file.
   */
  async #closed(pid: number, fd: number, file: RegistryFile): Promise<void> {
    if (file.put()) await this.#release(file);
    else await file.owner.fdClosed({ pid, fd, fileId: file.fileId, handle: file.handle });
  }

  /** Drops every fd in flight from or to `pid`, as the sockets carrying them are torn down. */
  async dropTransfersOf(pid: number): Promise<number> {
    const files = this.#transfers.dropInvolving(pid);
    for (const file of files) await this.put(file);
    return files.length;
  }

  processes(): ProcessInfo[] {
    return [...this.#processes.values()].map((process) => ({
      pid: process.pid,
      name: process.name,
      fds: process.fds.entries().map(([fd, file]) => ({ fd, kind: file.kind, fileId: file.fileId, owner: file.owner.name })),
    }));
  }
}
