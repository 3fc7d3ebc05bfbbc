/** A file as the registry resolved an fd: its owner and that owner's handle for it. */
export interface CachedFile {
  readonly owner: string;
  readonly handle: string;
}

/** A ResolveFd on its way; a close of its fd meanwhile makes its answer stale. */
interface Lookup {
  stale: boolean;
}

/**
 * An owner's memory of which of its files each (pid, fd) names, remembered
 * after the registry resolved it once, so an ioctl (vfio-pci) or a verb
 * (rdma-nic) pays no round trip to the registry. The owner feeds it the
 * registry's calls: fdClosed (so the owner must have that op, which asks the
 * registry for them) and release.
 *
 * What a number names changes only when the process closes it: the registry
 * never overwrites an fd (dup, receive and create take the lowest free
 * number), it tells this owner of every close of an fd of its files before
 * the close returns and before the number can be handed out again
 * (fdClosed, or release for the last reference), and an exiting process
 * closes each of its fds that way. Only the owner's own live files are
 * remembered: nobody tells it when another owner's fd closes, and a miss
 * (EBADF, another owner's file) is asked again every time.
 */
export class FdCache {
  /** `${pid}:${fd}` -> handle. */
  readonly #handles = new Map<string, string>();
  /** handle -> the keys naming it, to forget them all on release. */
  readonly #keys = new Map<string, Set<string>>();
  /** Lookups in flight by key. */
  readonly #lookups = new Map<string, Set<Lookup>>();

  /** The handle remembered for (pid, fd), if any. */
  get(pid: number, fd: number): string | undefined {
    return this.#handles.get(key(pid, fd));
  }

  /**
   * Asks `ask` what (pid, fd) names, and remembers the answer if `keep`
   * accepts it (a live file of this owner's) when it arrives, unless the fd
   * was closed meanwhile: the close notice and the answer travel on
   * different streams, so the notice can overtake an answer that names the
   * file the number referred to before the close.
   */
  async resolve<F extends CachedFile>(pid: number, fd: number, ask: () => Promise<F>, keep: (file: F) => boolean): Promise<F> {
    const k = key(pid, fd);
    const lookup: Lookup = { stale: false };
    let inFlight = this.#lookups.get(k);
    if (inFlight === undefined) {
      inFlight = new Set();
      this.#lookups.set(k, inFlight);
    }
    inFlight.add(lookup);
    try {
      const file = await ask();
      if (!lookup.stale && keep(file)) this.#remember(k, file.handle);
      return file;
    } finally {
      inFlight.delete(lookup);
      if (inFlight.size === 0) this.#lookups.delete(k);
    }
  }

  /** The registry's fdClosed: (pid, fd) names nothing of this owner's any more, nor does any answer still on its way. */
  fdClosed(pid: number, fd: number): void {
    const k = key(pid, fd);
    for (const lookup of this.#lookups.get(k) ?? []) lookup.stale = true;
    const handle = this.#handles.get(k);
    if (handle === undefined) return;
    this.#handles.delete(k);
    const keys = this.#keys.get(handle);
    keys?.delete(k);
    if (keys?.size === 0) this.#keys.delete(handle);
  }

  /** The file's last reference is gone: no fd names it any more. */
  released(handle: string): void {
    for (const k of this.#keys.get(handle) ?? []) this.#handles.delete(k);
    this.#keys.delete(handle);
  }

  #remember(k: string, handle: string): void {
    this.#handles.set(k, handle);
    let keys = this.#keys.get(handle);
    if (keys === undefined) {
      keys = new Set();
      this.#keys.set(handle, keys);
    }
    keys.add(k);
  }
}

function key(pid: number, fd: number): string {
  return `${pid}:${fd}`;
}
