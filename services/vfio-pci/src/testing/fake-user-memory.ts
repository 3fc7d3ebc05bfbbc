import { errno } from '@p2p/errno';
import type { PinnedExtent, PinnedUserMemory, UserMemoryPort } from '../ports/user-memory-port';

interface FakeVma {
  readonly start: bigint;
  readonly end: bigint;
  readonly writable: boolean;
  /** VM_IO | VM_PFNMAP: an mmap of a BAR. */
  readonly device: boolean;
  readonly segment: string;
}

/**
 * A UserMemoryPort standing in for the registry's view of process memory:
 * per process, mappings (`mmap`) backed by a segment each; a pin must lie
 * wholly in normal mappings (EFAULT for a hole, a device mapping, or a
 * write pin of a read-only one). `pins` counts live pins; pins and unpins
 * are appended to `log`.
 */
export class FakeUserMemory implements UserMemoryPort {
  readonly #vmas = new Map<number, FakeVma[]>();
  pins = 0;

  constructor(readonly log: string[]) {}

  /** mmap(): [start, start + length) of `pid`. */
  mmap(pid: number, start: bigint, length: bigint, options: { writable?: boolean; device?: boolean } = {}): void {
    const vmas = this.#vmas.get(pid) ?? [];
    vmas.push({ start, end: start + length, writable: options.writable ?? true, device: options.device ?? false, segment: `mem-${pid}-${start.toString(16)}` });
    this.#vmas.set(pid, vmas);
  }

  /** exit(): the process's memory is gone. */
  exit(pid: number): void {
    this.#vmas.delete(pid);
  }

  async pin(pid: number, userVa: bigint, length: bigint, write: boolean): Promise<PinnedUserMemory> {
    const extents: PinnedExtent[] = [];
    const end = userVa + length;
    for (let at = userVa; at < end; ) {
      const vma = this.#vmas.get(pid)?.find((candidate) => candidate.start <= at && at < candidate.end);
      if (vma === undefined) throw errno('EFAULT', `pid ${pid} has nothing mapped at 0x${at.toString(16)}`);
      if (vma.device) throw errno('EFAULT', `0x${at.toString(16)} of pid ${pid} is device memory (VM_IO | VM_PFNMAP)`);
      if (write && !vma.writable) throw errno('EFAULT', `0x${at.toString(16)} of pid ${pid} is read-only`);
      const to = vma.end < end ? vma.end : end;
      extents.push({ segment: vma.segment, offset: Number(at - vma.start), length: Number(to - at) });
      at = to;
    }
    this.pins++;
    this.log.push(`pin ${pid} 0x${userVa.toString(16)}+0x${length.toString(16)}`);
    let pinned = true;
    return {
      extents,
      unpin: async () => {
        if (!pinned) return;
        pinned = false;
        this.pins--;
        this.log.push(`unpin ${pid} 0x${userVa.toString(16)}+0x${length.toString(16)}`);
      },
    };
  }
}
