import { copyAcross } from '../memory/copy';

/** A copy of the `length` bytes of `views` in one Buffer: a payload the wire owns (inline, or queued). */
export function gather(views: readonly Uint8Array[], length: number): Buffer {
  const out = Buffer.allocUnsafe(length);
  copyAcross(views, [out], length);
  return out;
}
