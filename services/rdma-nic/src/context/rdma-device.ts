import { FdCache } from '@p2p/dmabuf-client';
import { errno } from '@p2p/errno';
import type { Nic } from '../nic';
import type { DoorbellServer } from '../user-queues/doorbell-server';
import type { DeviceAttr } from './device-attr';
import type { ContextFilePort, MemoryImportPort, ResolvedContextFile } from './ports';
import { type ErrorReporter, VerbsContext } from './verbs-context';

export interface RdmaDeviceOptions {
  readonly nic: Nic;
  readonly attr: DeviceAttr;
  readonly files: ContextFilePort;
  readonly imports: MemoryImportPort;
  readonly report: ErrorReporter;
  /** Where processes ring the doorbells of their user queues; without it OpenUserQueues is EOPNOTSUPP. */
  readonly doorbells?: DoorbellServer;
}

/**
 * The NIC as its uverbs device: contexts are files of the NIC in the
 * registry, opened by OpenDevice and found again from (pid, fd) on every
 * call, as every uverbs command starts from the caller's fd: asked of the
 * registry once per fd, then remembered until the registry says the fd was
 * closed (fdClosed) or the context released. One Nic serves every context;
 * each context keeps to its own objects.
 */
export class RdmaDevice {
  readonly nic: Nic;
  readonly attr: DeviceAttr;
  readonly #files: ContextFilePort;
  readonly #imports: MemoryImportPort;
  readonly #report: ErrorReporter;
  readonly #doorbells: DoorbellServer | undefined;
  readonly #contexts = new Map<string, VerbsContext>();
  readonly #fds = new FdCache();
  #nextContext = 1;

  constructor(options: RdmaDeviceOptions) {
    this.nic = options.nic;
    this.attr = options.attr;
    this.#files = options.files;
    this.#imports = options.imports;
    this.#report = options.report;
    this.#doorbells = options.doorbells;
  }

  /** ibv_open_device(): a new context file in pid's fd table; resolves to its fd. */
  async openDevice(pid: number): Promise<number> {
    const handle = `context-${this.#nextContext++}`;
    // Known before the file exists: its release may race the answer.
    this.#contexts.set(handle, new VerbsContext(handle, this.nic, this.#imports, this.#report, this.#doorbells));
    try {
      return await this.#files.create(pid, handle);
    } catch (error) {
      this.#contexts.delete(handle);
      throw error;
    }
  }

  /** The context behind pid's fd: EBADF unless it is an open context file of this NIC. */
  async context(pid: number, fd: number): Promise<VerbsContext> {
    const handle = this.#fds.get(pid, fd) ?? (await this.#lookUp(pid, fd));
    const context = handle === undefined ? undefined : this.#contexts.get(handle);
    if (context === undefined) throw errno('EBADF', `fd ${fd} of pid ${pid} is not a verbs context of ${this.attr.name} (${this.attr.bdf})`);
    return context;
  }

  /** `pid` closed `fd`, a context file that lives on elsewhere (a dup, a sent fd): the number names it no more. */
  fdClosed(pid: number, fd: number): void {
    this.#fds.fdClosed(pid, fd);
  }

  /** The registry released a context file (its last fd closed, or its process exited). */
  async release(handle: string): Promise<void> {
    this.#fds.released(handle);
    const context = this.#contexts.get(handle);
    if (context === undefined) return;
    this.#contexts.delete(handle);
    await context.release();
  }

  /** The handle of a live context of this NIC that (pid, fd) names, remembered if so; undefined for any other file. */
  async #lookUp(pid: number, fd: number): Promise<string | undefined> {
    const live = (file: ResolvedContextFile): boolean => file.ours && this.#contexts.has(file.handle);
    const file = await this.#fds.resolve(pid, fd, () => this.#files.resolve(pid, fd), live);
    return live(file) ? file.handle : undefined;
  }

  /** Shutdown: every context is released as if its process exited. */
  async close(): Promise<void> {
    await Promise.all([...this.#contexts.keys()].map((handle) => this.release(handle)));
  }
}
