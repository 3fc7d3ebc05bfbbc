import type { ClosedFd, FileOwner } from './file-owner';

/** The exporter ops the kernel declares void: their failure cannot fail the operation that made them. */
export type VoidOwnerOp = 'release' | 'fdClosed' | 'detach' | 'unmap' | 'unpin' | 'fence';

/** An owner op that rejected after the registry had already changed its state. */
export interface OwnerFailure {
  readonly owner: string;
  readonly op: VoidOwnerOp;
  readonly error: unknown;
}

export type OwnerFailureReporter = (failure: OwnerFailure) => void;

/**
 * One registration of an owner. Files point at the registration, not the
 * name: a name freed by ownerGone() can be registered again, and the new
 * owner must never receive a release meant for the dead one.
 */
export class OwnerRecord {
  #alive = true;

  constructor(
    readonly owner: FileOwner,
    readonly report: OwnerFailureReporter,
  ) {}

  get name(): string {
    return this.owner.name;
  }

  get alive(): boolean {
    return this.#alive;
  }

  /** The owner service died: nothing is sent to it any more. */
  markGone(): void {
    this.#alive = false;
  }

  /** Tells an owner that remembers fds (one with fdClosed) that one of them was closed. */
  async fdClosed(closed: ClosedFd): Promise<void> {
    if (this.owner.fdClosed === undefined) return;
    await this.voidCall('fdClosed', async (owner) => {
      await owner.fdClosed?.(closed);
    });
  }

  /**
   * Calls a void op if the owner is alive. A dead owner is skipped: there is
   * nobody to tell, and a dead exporter's memory is already unreachable.
   */
  async voidCall(op: VoidOwnerOp, call: (owner: FileOwner) => Promise<void>): Promise<void> {
    if (!this.#alive) return;
    try {
      await call(this.owner);
    } catch (error) {
      this.report({ owner: this.name, op, error });
    }
  }
}
