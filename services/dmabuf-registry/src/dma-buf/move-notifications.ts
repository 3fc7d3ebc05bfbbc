import { errno } from '@p2p/errno';
import type { Attachment } from './attachment';

/** How a notification ended: acked (or its importer died or detached), or left unacked past the deadline. */
export type AckOutcome = 'acked' | 'timed-out';

interface Pending {
  readonly attachment: Attachment;
  readonly settle: (outcome: AckOutcome) => void;
}

/**
 * move_notify calls awaiting their ack. Only moves in progress hold
 * anything here: one entry per notification and one timer per move.
 */
export class MoveNotifications {
  readonly #pending = new Map<number, Pending>();
  #lastId = 0;

  /**
   * Gives each attachment a fresh notification id, `send`s it, and resolves
   * with each one's outcome, in order, once every one is acked or
   * `timeoutMs` has passed. An ack inside `send` counts.
   */
  async fanOut(
    attachments: readonly Attachment[],
    timeoutMs: number,
    send: (attachment: Attachment, notificationId: number) => void,
  ): Promise<AckOutcome[]> {
    if (attachments.length === 0) return [];
    const ids: number[] = [];
    const outcomes = attachments.map((attachment) => {
      const id = ++this.#lastId;
      ids.push(id);
      return new Promise<AckOutcome>((settle) => this.#pending.set(id, { attachment, settle }));
    });
    attachments.forEach((attachment, i) => send(attachment, ids[i]!));
    const deadline = setTimeout(() => {
      for (const id of ids) this.#settle(id, 'timed-out');
    }, timeoutMs);
    try {
      return await Promise.all(outcomes);
    } finally {
      clearTimeout(deadline);
    }
  }

  /** The importer's ack. ENOENT for an unknown or settled id, or one addressed to another pid. */
  ack(pid: number, notificationId: number): Attachment {
    const pending = this.#pending.get(notificationId);
    if (pending === undefined || pending.attachment.importerPid !== pid) {
      throw errno('ENOENT', `pid ${pid} has no pending move_notify ${notificationId}`);
    }
    this.#settle(notificationId, 'acked');
    return pending.attachment;
  }

  /** Settles as acked every notification `matches` selects; returns their ids and attachments. */
  ackWhere(matches: (attachment: Attachment) => boolean): [number, Attachment][] {
    const settled: [number, Attachment][] = [];
    for (const [id, pending] of this.#pending) {
      if (matches(pending.attachment)) {
        this.#settle(id, 'acked');
        settled.push([id, pending.attachment]);
      }
    }
    return settled;
  }

  #settle(id: number, outcome: AckOutcome): void {
    const pending = this.#pending.get(id);
    if (pending === undefined) return;
    this.#pending.delete(id);
    pending.settle(outcome);
  }
}
