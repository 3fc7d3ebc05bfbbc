import { errno } from '@p2p/errno';
import type { RegistryEvents } from '../events/registry-events';
import type { FileLayer } from '../files/file-layer';
import type { OwnerRecord } from '../owners/owner-record';
import type { Attachment } from './attachment';
import type { DmaBuf } from './dma-buf';
import type { DmaBufCore } from './dma-buf-core';
import { MoveNotifications } from './move-notifications';

export interface MoveRequest {
  readonly revoked: boolean;
  /** The exporter lets go for good (vfio_pci_dma_buf_cleanup() on close of the device): orphaned. */
  readonly permanent?: boolean;
}

export interface MoveResult {
  /** move_notify calls made. */
  readonly notified: number;
  /** Attachments fenced for not acking in time. */
  readonly fenced: number;
}

const NOTHING_MOVED: MoveResult = { notified: 0, fenced: 0 };

/**
 * vfio_pci_dma_buf_move() and dma_buf_move_notify(): flipping a buffer's
 * revoked bit and telling every dynamic importer, then waiting, still under
 * the reservation lock, until each acked or the deadline passed. An ack
 * means the importer stopped DMA and dropped its mapping, so the registry
 * unmaps on its behalf. An importer silent past the deadline is fenced:
 * force-detached, told so, and the exporter moves the memory away from the
 * stale mapping.
 */
export class BufferMoves {
  readonly #notifications = new MoveNotifications();
  /** The move each pending notification belongs to (the sequence of its REVOKE or UNREVOKE), for the ACK and FENCE events. */
  readonly #moveOf = new Map<number, number>();
  readonly #core: DmaBufCore;
  readonly #files: FileLayer;
  readonly #events: RegistryEvents;
  readonly #ackTimeoutMs: number;

  constructor(core: DmaBufCore, files: FileLayer, events: RegistryEvents, ackTimeoutMs: number) {
    this.#core = core;
    this.#files = files;
    this.#events = events;
    this.#ackTimeoutMs = ackTimeoutMs;
  }

  /**
   * The exporter's move. ENOENT for a buffer that is not `owner`'s or that it
   * already let go of; EINVAL for a permanent move that does not revoke.
   */
  async move(owner: OwnerRecord, bufferId: number, request: MoveRequest): Promise<MoveResult> {
    const permanent = request.permanent ?? false;
    if (permanent && !request.revoked) throw errno('EINVAL', 'a permanent move must revoke');
    const buffer = this.#core.buffer(bufferId);
    if (buffer === undefined || buffer.owner !== owner || buffer.forgotten) {
      throw errno('ENOENT', `${owner.name} has no dma-buf ${bufferId}`);
    }
    return this.#run(buffer, () => {
      // The exporter may have let go or died while this waited for the lock.
      if (buffer.forgotten || !owner.alive) throw errno('ENOENT', `${owner.name} has no dma-buf ${bufferId} any more`);
      return { revoked: request.revoked, permanent };
    });
  }

  /** The exporter died: every buffer it still had is revoked for good, its importers told as for a revoke. */
  async ownerGone(owner: OwnerRecord): Promise<void> {
    const buffers = this.#core.buffersOf(owner).filter((buffer) => !buffer.forgotten);
    await Promise.all(
      buffers.map((buffer) =>
        this.#run(buffer, () => (buffer.forgotten ? undefined : { revoked: true, permanent: true })),
      ),
    );
  }

  /** The importer's ack. ENOENT for an unknown or settled id, or one addressed to another pid. */
  ack(pid: number, notificationId: number): void {
    this.#files.process(pid);
    const attachment = this.#notifications.ack(pid, notificationId);
    this.#emitAck(notificationId, attachment, 'acked');
  }

  /** A dead process does no DMA: its pending notifications count as acked. */
  importerExited(pid: number): void {
    for (const [id, attachment] of this.#notifications.ackWhere((a) => a.importerPid === pid)) {
      this.#emitAck(id, attachment, 'acked by exit');
    }
  }

  /** An importer detaching has stopped DMA: its pending notification counts as acked. */
  importerDetaching(attachment: Attachment): void {
    for (const [id] of this.#notifications.ackWhere((a) => a === attachment)) {
      this.#emitAck(id, attachment, 'acked by detach');
    }
  }

  /**
   * Holds a reference for the whole move (get_file_active() in
   * vfio_pci_dma_buf_move()), so the release comes after it; decides under
   * the lock what to do; and drops the fenced attachments' references once
   * the lock is released.
   */
  async #run(
    buffer: DmaBuf,
    decide: () => { revoked: boolean; permanent: boolean } | undefined,
  ): Promise<MoveResult> {
    buffer.get();
    try {
      const { result, fenced } = await buffer.resv.run(async () => {
        const change = decide();
        return change === undefined
          ? { result: NOTHING_MOVED, fenced: [] }
          : this.#moveLocked(buffer, change.revoked, change.permanent);
      });
      for (let i = 0; i < fenced.length; i++) await this.#files.put(buffer);
      return result;
    } finally {
      await this.#files.put(buffer);
    }
  }

  async #moveLocked(
    buffer: DmaBuf,
    revoked: boolean,
    permanent: boolean,
  ): Promise<{ result: MoveResult; fenced: Attachment[] }> {
    if (!permanent && buffer.revoked === revoked) return { result: NOTHING_MOVED, fenced: [] };
    if (permanent) buffer.forget();
    else buffer.setRevoked(revoked);
    const moveId = this.#events.emit({
      kind: revoked ? 'REVOKE' : 'UNREVOKE',
      bufferId: buffer.bufferId,
      detail: permanent ? 'revoked for good: the exporter let go' : revoked ? 'revoked' : 'accessible again',
    });
    const result = await this.#fanOut(buffer, moveId);
    this.#events.emit({
      kind: 'MOVE_DONE',
      bufferId: buffer.bufferId,
      moveId,
      detail: `${revoked ? 'revoke' : 'unrevoke'} returns: ${result.result.notified} notified, ${result.result.fenced} fenced`,
    });
    return result;
  }

  /** Tells the dynamic importers, waits for their acks, unmaps for the acked and fences the silent. */
  async #fanOut(buffer: DmaBuf, moveId: number): Promise<{ result: MoveResult; fenced: Attachment[] }> {
    // dma_buf_move_notify(): every attachment with importer_ops. One whose
    // process is already exiting does no DMA: it counts as acked untold.
    const dynamic = buffer.attachments.filter((attachment) => attachment.params.dynamic);
    const told = dynamic.filter((attachment) => attachment.importer.alive);
    const notificationIds: number[] = [];
    const outcomes = await this.#notifications
      .fanOut(told, this.#ackTimeoutMs, (attachment, notificationId) => {
        notificationIds.push(notificationId);
        this.#notify(attachment, notificationId, moveId);
      })
      .finally(() => {
        for (const id of notificationIds) this.#moveOf.delete(id);
      });
    const fenced = told.filter((_, i) => outcomes[i] === 'timed-out');
    const acked = dynamic.filter((attachment) => !fenced.includes(attachment));

    // The exporter's unmaps are independent of each other: one round trip for all.
    await Promise.all(
      acked
        .filter((attachment) => attachment.mapping !== undefined)
        .map((attachment) => this.#core.unmapLocked(attachment, 'unmapped on the importer\'s behalf after its ack')),
    );
    if (fenced.length > 0) {
      const fencedIds = notificationIds.filter((_, i) => outcomes[i] === 'timed-out');
      await this.#fence(buffer, fenced, moveId, fencedIds);
    }
    return { result: { notified: told.length, fenced: fenced.length }, fenced };
  }

  #notify(attachment: Attachment, notificationId: number, moveId: number): void {
    this.#moveOf.set(notificationId, moveId);
    this.#events.emit({
      kind: 'MOVE_NOTIFY',
      bufferId: attachment.buffer.bufferId,
      attachmentId: attachment.attachmentId,
      pid: attachment.importerPid,
      moveId,
      notificationId,
      detail: `notification ${notificationId}, ack within ${this.#ackTimeoutMs} ms`,
    });
    try {
      attachment.importer.notifier?.moveNotify({
        notificationId,
        attachmentId: attachment.attachmentId,
        bufferId: attachment.buffer.bufferId,
        timeoutMs: this.#ackTimeoutMs,
      });
    } catch {
      // Undeliverable (its session broke): it goes unacked and the deadline fences it.
    }
  }

  /**
   * Force-detaches the silent attachments at once, tells their importers,
   * has the exporter relocate the memory (once for the move), then lets the
   * exporter undo the attachments. The caller drops their references.
   */
  async #fence(buffer: DmaBuf, fenced: readonly Attachment[], moveId: number, notificationIds: readonly number[]): Promise<void> {
    const unlinked = fenced.map((attachment) => this.#core.unlink(attachment));
    for (const [i, attachment] of fenced.entries()) {
      this.#events.emit({
        kind: 'FENCE',
        bufferId: buffer.bufferId,
        attachmentId: attachment.attachmentId,
        pid: attachment.importerPid,
        moveId,
        notificationId: notificationIds[i],
        detail: `no ack within ${this.#ackTimeoutMs} ms: force-detached`,
      });
      if (attachment.importer.alive) {
        try {
          attachment.importer.notifier?.fenced({ attachmentId: attachment.attachmentId, bufferId: buffer.bufferId });
        } catch {
          // Its session is broken; the fence stands all the same.
        }
      }
    }
    await buffer.owner.voidCall('fence', (owner) => owner.fence(buffer.bufferId));
    for (let i = 0; i < fenced.length; i++) await this.#core.undoAtOwner(fenced[i]!, unlinked[i]!);
  }

  #emitAck(notificationId: number, attachment: Attachment, detail: string): void {
    this.#events.emit({
      kind: 'ACK',
      bufferId: attachment.buffer.bufferId,
      attachmentId: attachment.attachmentId,
      pid: attachment.importerPid,
      moveId: this.#moveOf.get(notificationId),
      notificationId,
      detail: `notification ${notificationId} ${detail}`,
    });
  }
}
