import { errno, type ErrnoError } from '@p2p/errno';
import type { BufferMove, CreatedFile, DmaBufPort, ExportDmaBufRequest, ExportedDmaBuf, MoveResult, ResolvedFile } from '../ports/dma-buf-port';

interface FakeFile {
  readonly fileId: bigint;
  readonly owner: string;
  readonly handle: string;
  readonly kind: 'dma-buf' | 'owned';
  /** fds referring to it, across processes. */
  refs: number;
}

export interface FakeBuffer {
  readonly request: ExportDmaBufRequest;
  readonly bufferId: bigint;
  revoked: boolean;
  forgotten: boolean;
}

/**
 * What the registry calls back into when an fd of one of vfio-pci's files
 * closes: release for the file's last fd, else fdClosed.
 */
export interface OwnerTarget {
  release(handle: string): Promise<void>;
  fdClosed(pid: number, fd: number): void;
}

/**
 * A DmaBufPort standing in for dmabuf-registry: per-process fd tables (lowest
 * free fd from 3, never overwritten), dma-bufs with a revoked bit, release
 * called when a file's last fd is closed and fdClosed for vfio-pci's other
 * closes, before the close returns. Every export and move is appended to `log`
 * (shared with FakePci); `holdMoves()` makes moves wait (the importers have
 * not acked yet), `holdExports()` delays export answers and `holdResolves()`
 * ResolveFd answers, `failNextMove` and `failNextCreate` make the next move or
 * file creation reject. `resolves` counts ResolveFd calls.
 */
export class FakeRegistry implements DmaBufPort {
  readonly buffers = new Map<bigint, FakeBuffer>();
  readonly #tables = new Map<number, Map<number, FakeFile>>();
  #nextFileId = 1n;
  readonly #exited = new Set<number>();
  #gate: Promise<void> | undefined;
  #exportGate: Promise<void> | undefined;
  #resolveGate: Promise<void> | undefined;
  failNextMove: ErrnoError | undefined;
  failNextCreate: ErrnoError | undefined;
  owner: OwnerTarget | undefined;
  resolves = 0;
  /** Moves that made a change, per buffer: what the registry would notify. */
  readonly notified = new Map<bigint, number>();

  constructor(readonly log: string[]) {}

  /* ---- test controls ---- */

  /** Moves wait until the returned function is called. */
  holdMoves(): () => void {
    let open!: () => void;
    this.#gate = new Promise<void>((resolve) => (open = resolve));
    return () => {
      this.#gate = undefined;
      open();
    };
  }

  /** Exports install the fd, then wait (before answering) until the returned function is called. */
  holdExports(): () => void {
    let open!: () => void;
    this.#exportGate = new Promise<void>((resolve) => (open = resolve));
    return () => {
      this.#exportGate = undefined;
      open();
    };
  }

  /** ResolveFd looks the fd up at once, then answers only when the returned function is called. */
  holdResolves(): () => void {
    let open!: () => void;
    this.#resolveGate = new Promise<void>((resolve) => (open = resolve));
    return () => {
      this.#resolveGate = undefined;
      open();
    };
  }

  /** A file of another owner (an rdma-nic context, say) in pid's table. */
  foreignFile(pid: number): number {
    return this.#install(pid, { fileId: this.#nextFileId++, owner: 'rdma-nic', handle: 'ctx-1', kind: 'owned', refs: 0 });
  }

  /** A dma-buf of another exporter (the system heap) in pid's table. */
  foreignDmaBuf(pid: number): number {
    return this.#install(pid, { fileId: this.#nextFileId++, owner: 'system-heap', handle: 'heap-1', kind: 'dma-buf', refs: 0 });
  }

  /** SCM_RIGHTS: the same file in another process's table. */
  sendFd(fromPid: number, fd: number, toPid: number): number {
    return this.#install(toPid, this.#file(fromPid, fd));
  }

  /** dup(2): the same file at the lowest free fd. */
  dupFd(pid: number, fd: number): number {
    return this.#install(pid, this.#file(pid, fd));
  }

  /** close(2): the last fd of a file releases it; vfio-pci hears of any other close of its files' fds. */
  async closeFd(pid: number, fd: number): Promise<void> {
    const file = this.#file(pid, fd);
    this.#tables.get(pid)!.delete(fd);
    if (--file.refs === 0) {
      for (const buffer of this.buffers.values()) {
        if (buffer.request.handle === file.handle) this.buffers.delete(buffer.bufferId);
      }
      this.log.push(`release ${file.handle}`);
      await this.owner?.release(file.handle);
    } else if (file.owner === 'vfio-pci') {
      this.owner?.fdClosed(pid, fd);
    }
  }

  /** do_exit(): every fd closed, lowest first; the pid is ESRCH from then on. */
  async exitProcess(pid: number): Promise<void> {
    const fds = [...(this.#tables.get(pid)?.keys() ?? [])].sort((a, b) => a - b);
    for (const fd of fds) await this.closeFd(pid, fd);
    this.#exited.add(pid);
  }

  /** The dma-buf behind fd. */
  bufferAt(pid: number, fd: number): FakeBuffer {
    const file = this.#file(pid, fd);
    return [...this.buffers.values()].find((buffer) => buffer.request.handle === file.handle)!;
  }

  /* ---- DmaBufPort ---- */

  async exportDmaBuf(request: ExportDmaBufRequest): Promise<ExportedDmaBuf> {
    if ((request.openFlags & 3) === 3) throw errno('EINVAL', 'access mode 3');
    const fileId = this.#nextFileId++;
    const fd = this.#install(request.pid, { fileId, owner: 'vfio-pci', handle: request.handle, kind: 'dma-buf', refs: 0 });
    this.buffers.set(fileId, { request, bufferId: fileId, revoked: request.revoked, forgotten: false });
    this.log.push(`export ${fileId} ${request.revoked ? 'revoked' : 'live'}`);
    await this.#exportGate;
    return { bufferId: fileId, fd };
  }

  async move(bufferId: bigint, revoked: boolean, permanent: boolean): Promise<MoveResult> {
    const buffer = this.buffers.get(bufferId);
    if (buffer === undefined || buffer.forgotten) throw errno('ENOENT', `no dma-buf ${bufferId}`);
    this.log.push(`move ${bufferId} ${revoked ? 'revoke' : 'unrevoke'}${permanent ? ' permanent' : ''}`);
    await this.#gate;
    const failure = this.failNextMove;
    if (failure !== undefined) {
      this.failNextMove = undefined;
      throw failure;
    }
    const changed = buffer.revoked !== revoked;
    buffer.revoked = revoked;
    buffer.forgotten = permanent;
    if (changed) this.notified.set(bufferId, (this.notified.get(bufferId) ?? 0) + 1);
    this.log.push(`moved ${bufferId}`);
    return { notified: changed ? 1 : 0, fenced: 0 };
  }

  moveAll(moves: readonly BufferMove[]): Promise<Array<PromiseSettledResult<MoveResult>>> {
    return Promise.allSettled(moves.map((m) => this.move(m.bufferId, m.revoked, m.permanent)));
  }

  async createFile(pid: number, handle: string): Promise<CreatedFile> {
    const failure = this.failNextCreate;
    this.failNextCreate = undefined;
    if (failure !== undefined) throw failure;
    const fileId = this.#nextFileId++;
    return { fileId, fd: this.#install(pid, { fileId, owner: 'vfio-pci', handle, kind: 'owned', refs: 0 }) };
  }

  async resolveFd(pid: number, fd: number): Promise<ResolvedFile> {
    this.resolves++;
    const file = this.#file(pid, fd);
    await this.#resolveGate;
    return { owner: file.owner, handle: file.handle, kind: file.kind };
  }

  /* ---- internals ---- */

  #install(pid: number, file: FakeFile): number {
    let table = this.#tables.get(pid);
    if (table === undefined) {
      table = new Map();
      this.#tables.set(pid, table);
    }
    let fd = 3;
    while (table.has(fd)) fd++;
    table.set(fd, file);
    file.refs++;
    return fd;
  }

  #file(pid: number, fd: number): FakeFile {
    if (this.#exited.has(pid)) throw errno('ESRCH', `no process with pid ${pid}`);
    const file = this.#tables.get(pid)?.get(fd);
    if (file === undefined) throw errno('EBADF', `pid ${pid} has no fd ${fd}`);
    return file;
  }
}
