import { ErrnoError } from '@p2p/errno';
import type { DmaBufPort } from '../ports/dma-buf-port';
import type { VfioDmaBuf } from './vfio-dma-buf';

/**
 * move_notify to the in-process importers (iommufd) of every buffer that
 * moved, all at once; they never fail.
 */
async function notifyInProcess(buffers: readonly VfioDmaBuf[]): Promise<void> {
  await Promise.all(buffers.flatMap((buffer) => [...buffer.importers].map((importer) => importer.moveNotify())));
}

/** The registry answers ENOENT for a buffer whose file is already gone: get_file_active() failed. */
function fileGone(error: unknown): boolean {
  return error instanceof ErrnoError && error.errno === 'ENOENT';
}

/**
 * vfio_pci_dma_buf_move(): every buffer still on the device's list whose
 * revoked bit differs from `revoked` is flipped and its importers are told.
 * The kernel walks the list one buffer at a time; here every buffer's move
 * is under way at once (the importers of all are told concurrently) and the
 * call returns when all have quiesced: the same guarantee to whoever waits
 * on it, in the time of the slowest buffer rather than the sum. A buffer
 * whose bit already matches is left alone: a call that changes nothing
 * notifies no one. In-process importers (iommufd) are told alongside the
 * registry's. A buffer released meanwhile is skipped. A move the
 * registry refuses otherwise fails the caller with the first such error;
 * that buffer's bit is put back, the others stay moved.
 */
export async function moveDmaBufs(list: ReadonlySet<VfioDmaBuf>, port: DmaBufPort, revoked: boolean): Promise<void> {
  const moving = [...list].filter((buffer) => buffer.revoked !== revoked);
  if (moving.length === 0) return;
  for (const buffer of moving) buffer.revoked = revoked;
  const [outcomes] = await Promise.all([
    port.moveAll(moving.map((buffer) => ({ bufferId: buffer.bufferId!, revoked, permanent: false }))),
    notifyInProcess(moving),
  ]);
  let failure: unknown;
  outcomes.forEach((outcome, i) => {
    const buffer = moving[i]!;
    if (outcome.status === 'fulfilled' || fileGone(outcome.reason) || !list.has(buffer)) return;
    buffer.revoked = !revoked;
    failure ??= outcome.reason;
  });
  if (failure !== undefined) throw failure;
}

/**
 * vfio_pci_dma_buf_cleanup(), at the last close of the device (and when it
 * goes away): every buffer still on the list leaves it, forgets the device and
 * is revoked for good, with a move_notify whatever its bit was (to its
 * in-process importers too); all at once, as above. The fds live on; attach
 * and map fail with ENODEV from now on. Every buffer is handled even if a
 * move fails; the first failure is thrown at the end.
 */
export async function cleanupDmaBufs(list: ReadonlySet<VfioDmaBuf>, port: DmaBufPort): Promise<void> {
  const leaving = [...list];
  if (leaving.length === 0) return;
  for (const buffer of leaving) buffer.forget();
  const [outcomes] = await Promise.all([
    port.moveAll(leaving.map((buffer) => ({ bufferId: buffer.bufferId!, revoked: true, permanent: true }))),
    notifyInProcess(leaving),
  ]);
  const failed = outcomes.find((outcome) => outcome.status === 'rejected' && !fileGone(outcome.reason));
  if (failed !== undefined) throw (failed as PromiseRejectedResult).reason;
}
