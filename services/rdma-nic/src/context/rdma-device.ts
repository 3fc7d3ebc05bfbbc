import { errno } from '@p2p/errno';
import type { Nic } from '../nic';
import type { DeviceAttr } from './device-attr';
import type { ContextFilePort, MemoryImportPort } from './ports';
import { type ErrorReporter, VerbsContext } from './verbs-context';

export interface RdmaDeviceOptions {
  readonly nic: Nic;
  readonly attr: DeviceAttr;
  readonly files: ContextFilePort;
  readonly imports: MemoryImportPort;
  readonly report: ErrorReporter;
}

/**
 * The NIC as its uverbs device: contexts are files of the NIC in the
 * registry, opened by OpenDevice and found again from (pid, fd) on every
 * call, as every uverbs command starts from the caller's fd. One Nic serves
 * every context; each context keeps to its own objects.
 */
export class RdmaDevice {
  readonly nic: Nic;
  readonly attr: DeviceAttr;
  readonly #files: ContextFilePort;
  readonly #imports: MemoryImportPort;
  readonly #report: ErrorReporter;
  readonly #contexts = new Map<string, VerbsContext>();
  #nextContext = 1;

  constructor(options: RdmaDeviceOptions) {
    this.nic = options.nic;
    this.attr = options.attr;
    this.#files = options.files;
    this.#imports = options.imports;
    this.#report = options.report;
  }

  /** ibv_open_device(): a new context file in pid's fd table; resolves to its fd. */
  async openDevice(pid: number): Promise<number> {
    const handle = `context-${this.#nextContext++}`;
    // Known before the file exists: its release may race the answer.
    this.#contexts.set(handle, new VerbsContext(handle, this.nic, this.#imports, this.#report));
    try {
      return await this.#files.create(pid, handle);
    } catch (error) {
      this.#contexts.delete(handle);
      throw error;
    }
  }

  /** The context behind pid's fd: EBADF unless it is an open context file of this NIC. */
  async context(pid: number, fd: number): Promise<VerbsContext> {
    const handle = await this.#files.resolve(pid, fd);
    const context = handle === undefined ? undefined : this.#contexts.get(handle);
    if (context === undefined) throw errno('EBADF', `fd ${fd} of pid ${pid} is not a verbs context of ${this.attr.name} (${this.attr.bdf})`);
    return context;
  }

  /** The registry released a context file (its last fd closed, or its process exited). */
  async release(handle: string): Promise<void> {
    const context = this.#contexts.get(handle);
    if (context === undefined) return;
    this.#contexts.delete(handle);
    await context.release();
  }

  /** Shutdown: every context is released as if its process exited. */
  async close(): Promise<void> {
    await Promise.all([...this.#contexts.keys()].map((handle) => this.release(handle)));
  }
}
