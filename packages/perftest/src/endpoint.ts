import type { TlsConfig } from '@p2p/auth';
import { RegistrySession } from '@p2p/dmabuf-client';
import { VerbsContext } from '@p2p/verbs';
import type { RdmaEnd } from './connection';

/** Where an endpoint's process lives: the registry that gives it a pid and fd table, and its NIC. */
export interface EndpointOptions {
  /** The process's name in the registry's listings. */
  readonly name: string;
  readonly registry: string;
  readonly nic: string;
  /** The segment directory the services share (P2P_SHM_DIR). */
  readonly shmDir?: string;
  readonly tls?: TlsConfig;
}

/**
 * One side of a test as a process of the model: a registry session (its pid
 * and fd table), a verbs context on its NIC, and one PD. What the test sets
 * up on it is undone by close(), last first, as the kernel releases a
 * process's files at exit, but in order and each call checked.
 */
export class Endpoint implements RdmaEnd {
  readonly #undo: { what: string; run: () => Promise<unknown> }[] = [];

  private constructor(
    readonly session: RegistrySession,
    readonly ctx: VerbsContext,
    readonly gid: Uint8Array,
    readonly pd: number,
  ) {}

  static async open(options: EndpointOptions): Promise<Endpoint> {
    const session = await RegistrySession.open(options.registry, { name: options.name, shmDir: options.shmDir, tls: options.tls });
    let ctx: VerbsContext | undefined;
    try {
      ctx = await VerbsContext.open(options.nic, session, options.tls);
      const { gid } = await ctx.queryPort(1);
      const endpoint = new Endpoint(session, ctx, gid, await ctx.allocPd());
      const opened = ctx;
      endpoint.onClose('close the verbs context', async () => {
        await opened.deallocPd(endpoint.pd);
        await session.closeFd(opened.fd);
      });
      return endpoint;
    } catch (error) {
      ctx?.close();
      await session.close();
      throw error;
    }
  }

  /** Something to undo at close(), before what was set up earlier. */
  onClose(what: string, run: () => Promise<unknown>): void {
    this.#undo.push({ what, run });
  }

  /**
   * Undoes everything, last first; a step that fails does not stop the
   * rest, and the session's end (process exit) drops whatever is left.
   * Rejects with the first failure, after all of it.
   */
  async close(): Promise<void> {
    const failures: string[] = [];
    for (const step of this.#undo.splice(0).reverse()) {
      await step.run().catch((error: unknown) => failures.push(`${step.what}: ${error instanceof Error ? error.message : String(error)}`));
    }
    this.ctx.close();
    await this.session.close();
    if (failures.length > 0) throw new Error(`cleaning up ${this.session.name}: ${failures.join('; ')}`);
  }
}
