import { FdTable } from '../files/fd-table';

/** dma_buf_move_notify() for one attachment: stop DMA, drop the mapping, then ack `notificationId`. */
export interface MoveNotice {
  readonly notificationId: number;
  readonly attachmentId: number;
  readonly bufferId: number;
  /** The ack deadline from now: past it the attachment is fenced. */
  readonly timeoutMs: number;
}

/** The attachment did not ack in time: it is detached and the memory it had mapped is no longer the buffer's. */
export interface FenceNotice {
  readonly attachmentId: number;
  readonly bufferId: number;
}

/**
 * How a process hears about its attachments (its session stream): the
 * importer_ops of a dynamic importer. Calls must not throw; a notice that
 * cannot be delivered simply goes unacked and its attachment is fenced.
 */
export interface ImporterNotifier {
  moveNotify(notice: MoveNotice): void;
  fenced(notice: FenceNotice): void;
}

/** A process: a session with an fd table. */
export class Process {
  readonly fds = new FdTable();
  #alive = true;

  constructor(
    readonly pid: number,
    readonly name: string,
    readonly notifier: ImporterNotifier | undefined,
  ) {}

  /** False from the moment exit begins: a dying process gets no notices and does no DMA. */
  get alive(): boolean {
    return this.#alive;
  }

  markExited(): void {
    this.#alive = false;
  }
}
