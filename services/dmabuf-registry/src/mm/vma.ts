/**
 * struct vm_area_struct: [start, end) of a process's address space shows
 * `file` from byte `offset` on. VMAs never change: a split or a trim makes
 * new ones (slice), as __split_vma() does, each holding the file in turn.
 */
export class Vma<F> {
  constructor(
    readonly start: number,
    readonly end: number,
    /** vma->vm_file: the mapped buffer. Each VMA holds a reference to it. */
    readonly file: F,
    /** The byte of the file that `start` shows (vm_pgoff in bytes). */
    readonly offset: number,
    readonly prot: number,
    /** VM_IO | VM_PFNMAP: device memory (a PCI BAR), no struct page behind it. */
    readonly deviceMemory: boolean,
  ) {}

  get length(): number {
    return this.end - this.start;
  }

  /** The part [from, to) of this VMA, which must lie within it, with the file offset to match. */
  slice(from: number, to: number): Vma<F> {
    return new Vma(from, to, this.file, this.offset + (from - this.start), this.prot, this.deviceMemory);
  }
}
