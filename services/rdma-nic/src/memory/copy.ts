/**
 * Copy `length` bytes from the concatenation of `from` into the
 * concatenation of `to`: each byte moves once, view to view, with no
 * staging buffer (the one copy of a DMA).
 */
export function copyAcross(from: readonly Uint8Array[], to: readonly Uint8Array[], length: number): void {
  // The common case, one contiguous view on each side (an SGE in one extent, a ring slot), copies without
  // the walk and without a subarray when the source is exactly the message.
  if (from.length === 1 && to.length === 1 && from[0]!.length >= length) {
    const src = from[0]!;
    to[0]!.set(src.length === length ? src : src.subarray(0, length));
    return;
  }
  let fi = 0;
  let fo = 0;
  let ti = 0;
  let to_ = 0;
  let left = length;
  while (left > 0) {
    const src = from[fi]!;
    const dst = to[ti]!;
    const n = Math.min(src.length - fo, dst.length - to_, left);
    if (n > 0) {
      dst.set(src.subarray(fo, fo + n), to_);
      fo += n;
      to_ += n;
      left -= n;
    }
    if (fo === src.length) {
      fi++;
      fo = 0;
    }
    if (to_ === dst.length) {
      ti++;
      to_ = 0;
    }
  }
}

/** Total length of some views. */
export function totalLength(views: readonly Uint8Array[]): number {
  let sum = 0;
  for (const view of views) {
    sum += view.length;
  }
  return sum;
}
