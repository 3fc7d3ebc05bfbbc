import { expect } from 'chai';
import { ErrnoError, type ErrnoName } from '@p2p/errno';
import type { P2pMapType, P2pOracle } from '../dma-buf/p2p-oracle';
import type { RegistryEvent } from '../events/registry-events';
import type { OwnerFailure } from '../owners/owner-record';
import type { FenceNotice, ImporterNotifier, MoveNotice } from '../processes/process';
import { Registry, type RegistryOptions } from '../registry';
import { FakeOwner } from './fake-owner';
import { MemorySegments } from './memory-segments';

/** Map types by "provider>client"; anything else is NOT_SUPPORTED. */
export class FakeOracle implements P2pOracle {
  readonly answers = new Map<string, P2pMapType>();
  readonly asked: string[] = [];

  async mapType(providerBdf: string, clientBdf: string): Promise<P2pMapType> {
    const key = `${providerBdf}>${clientBdf}`;
    this.asked.push(key);
    return this.answers.get(key) ?? 'NOT_SUPPORTED';
  }
}

/** A process's session: records notices, and acks each move_notify at once when `autoAck`. */
export class Session implements ImporterNotifier {
  readonly notices: MoveNotice[] = [];
  readonly fences: FenceNotice[] = [];
  pid = 0;

  constructor(
    readonly registry: Registry,
    public autoAck: boolean,
  ) {}

  moveNotify(notice: MoveNotice): void {
    this.notices.push(notice);
    if (this.autoAck) this.registry.ack(this.pid, notice.notificationId);
  }

  fenced(notice: FenceNotice): void {
    this.fences.push(notice);
  }
}

export interface Harness {
  registry: Registry;
  /** "vfio-pci", registered. */
  owner: FakeOwner;
  oracle: FakeOracle;
  segments: MemorySegments;
  events: RegistryEvent[];
  failures: OwnerFailure[];
  /** A process with a session (a dynamic importer can live in it). */
  process(name: string, autoAck?: boolean): { pid: number; session: Session };
  /** Event kinds seen so far, in order. */
  kinds(): string[];
}

export const PROVIDER = '0000:03:00.0';
export const NIC = '0000:04:00.0';

export function harness(options: Partial<RegistryOptions> = {}): Harness {
  const segments = new MemorySegments();
  const oracle = new FakeOracle();
  oracle.answers.set(`${PROVIDER}>${NIC}`, 'BUS_ADDR');
  const failures: OwnerFailure[] = [];
  const events: RegistryEvent[] = [];
  const registry = new Registry({
    p2p: oracle,
    segments,
    onOwnerError: (failure) => failures.push(failure),
    ...options,
  });
  registry.onEvent((event) => events.push(event));
  const owner = new FakeOwner('vfio-pci', segments);
  registry.registerOwner(owner);
  return {
    registry,
    owner,
    oracle,
    segments,
    events,
    failures,
    process(name, autoAck = true) {
      const session = new Session(registry, autoAck);
      session.pid = registry.openProcess(name, session);
      return { pid: session.pid, session };
    },
    kinds: () => events.map((event) => event.kind),
  };
}

/** Asserts that `run` throws (synchronously) an ErrnoError with `name`. */
export function expectErrno(run: () => unknown, name: ErrnoName): ErrnoError {
  try {
    run();
  } catch (error) {
    expect(error).to.be.instanceOf(ErrnoError);
    expect((error as ErrnoError).errno, (error as ErrnoError).message).to.equal(name);
    return error as ErrnoError;
  }
  expect.fail(`expected ${name}, nothing was thrown`);
}

/** Asserts that `promise` rejects with an ErrnoError with `name`. */
export async function expectRejects(promise: Promise<unknown>, name: ErrnoName): Promise<ErrnoError> {
  try {
    await promise;
  } catch (error) {
    expect(error).to.be.instanceOf(ErrnoError);
    expect((error as ErrnoError).errno, (error as ErrnoError).message).to.equal(name);
    return error as ErrnoError;
  }
  expect.fail(`expected ${name}, the promise resolved`);
}

/** Lets every pending microtask and immediate run (owner calls, lock hand-offs). */
export async function settle(): Promise<void> {
  for (let i = 0; i < 5; i++) await new Promise<void>((resolve) => setImmediate(resolve));
}
