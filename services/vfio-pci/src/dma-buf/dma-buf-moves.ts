import { ErrnoError } from '@p2p/errno';
import type { DmaBufPort } from '../ports/dma-buf-port';
import type { VfioDmaBuf } from './vfio-dma-buf';

/** The registry answers ENOENT for a buffer whose file is already gone: get_file_active() failed. */
function fileGone(error: unknown): boolean {
  return error instanceof ErrnoError && error.errno === 'ENOENT';
}

/**
 * vfio_pci_dma_buf_move(): every buffer still on the device's list whose
 * revoked bit differs from `revoked` is flipped and its importers are told
 * (one move each, in list order, each awaited until its importers have
 * quiesced). A buffer whose bit already matches is left alone: a call that
 * changes nothing notifies no one. A buffer released meanwhile is skipped.
 * A move the registry refuses otherwise fails the caller; that buffer's bit
 * is put back, those already moved stay moved.
 */
export async function moveDmaBufs(list: ReadonlySet<VfioDmaBuf>, port: DmaBufPort, revoked: boolean): Promise<void> {
  for (const buffer of [...list]) {
    if (!list.has(buffer) || buffer.revoked === revoked) continue;
    buffer.revoked = revoked;
    try {
      await port.move(buffer.bufferId!, revoked, false);
    } catch (error) {
      if (fileGone(error) || !list.has(buffer)) continue;
      buffer.revoked = !revoked;
      throw error;
    }
  }
}

/**
 * vfio_pci_dma_buf_cleanup(), at the last close of the device (and when it
 * goes away): every buffer still on the list leaves it, forgets the device and
 * is revoked for good, with a move_notify whatever its bit was. The fds live
 * on; attach and map fail with ENODEV from now on. Every buffer is handled
 * even if a move fails; the first failure is thrown at the end.
 */
export async function cleanupDmaBufs(list: ReadonlySet<VfioDmaBuf>, port: DmaBufPort): Promise<void> {
  let failure: unknown;
  for (const buffer of [...list]) {
    if (!list.has(buffer)) continue;
    buffer.forget();
    try {
      await port.move(buffer.bufferId!, true, true);
    } catch (error) {
      if (!fileGone(error)) failure ??= error;
    }
  }
  if (failure !== undefined) throw failure;
}
