import { errno } from '@p2p/errno';
import type { FileOwner } from './file-owner';
import { OwnerRecord, type OwnerFailureReporter } from './owner-record';

/** The live owners by name. */
export class OwnerTable {
  readonly #live = new Map<string, OwnerRecord>();

  constructor(readonly report: OwnerFailureReporter) {}

  /** EINVAL for an empty name, EBUSY if a live owner has it. */
  register(owner: FileOwner): OwnerRecord {
    if (typeof owner.name !== 'string' || owner.name === '') {
      throw errno('EINVAL', 'an owner needs a non-empty name');
    }
    if (this.#live.has(owner.name)) {
      throw errno('EBUSY', `owner ${owner.name} is already registered and alive`);
    }
    const record = new OwnerRecord(owner, this.report);
    this.#live.set(owner.name, record);
    return record;
  }

  /** ENOENT if no live owner has the name. */
  live(name: string): OwnerRecord {
    const record = this.#live.get(name);
    if (record === undefined) throw errno('ENOENT', `no live owner named ${JSON.stringify(name)}`);
    return record;
  }

  /** Forgets a live owner and marks it gone; its name is free again. */
  remove(record: OwnerRecord): void {
    this.#live.delete(record.name);
    record.markGone();
  }

  names(): string[] {
    return [...this.#live.keys()].sort();
  }
}
