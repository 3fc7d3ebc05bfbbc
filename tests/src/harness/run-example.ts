import { execFile } from 'node:child_process';
import * as path from 'node:path';

/** How a run of an example as a command ended: its exit code, output and stdout's lines. */
export interface ExampleRun {
  readonly code: number;
  readonly stdout: string;
  readonly stderr: string;
  readonly lines: string[];
}

/** The environment that points an example at services: addresses by variable (DMABUF_REGISTRY_ADDRESS, ...) and P2P_SHM_DIR. */
export type ExampleEnv = Readonly<Record<string, string>>;

/**
 * Runs tests/dist/examples/<name>.js as the README shows it (`node
 * tests/dist/examples/<name>.js`), with `env` over this process's
 * environment; the administrator's token comes from `.admin-token` in the
 * segment directory, as npm start leaves it.
 */
export function runExample(name: string, env: ExampleEnv, timeoutMs = 60_000): Promise<ExampleRun> {
  const script = path.join(__dirname, '..', 'examples', `${name}.js`);
  const full: NodeJS.ProcessEnv = { ...process.env, ...env };
  delete full.P2P_ADMIN_TOKEN;
  return new Promise((resolve) =>
    execFile(process.execPath, [script], { env: full, timeout: timeoutMs }, (error, stdout, stderr) =>
      resolve({ code: error === null ? 0 : Number(error.code ?? 1), stdout, stderr, lines: stdout.trim().split('\n') }),
    ),
  );
}

/**
 * An example's `require.main === module` block: runs it, prints the last
 * line `conclude` draws from its result and exits 0 when that says it went
 * as it should (1 otherwise, or on an error, printed).
 */
export function exampleMain<T>(run: Promise<T>, conclude: (result: T) => { readonly ok: boolean; readonly line: string }): void {
  run.then(
    (result) => {
      const { ok, line } = conclude(result);
      console.log(line);
      process.exit(ok ? 0 : 1);
    },
    (error: unknown) => {
      console.error(error);
      process.exit(1);
    },
  );
}

/** The environment that points an example at an RdmaStack's services, as npm start's defaults point it at npm start. */
export function rdmaStackEnv(stack: {
  readonly shmDir: string;
  readonly pciEmu: { readonly address: string };
  readonly registry: { readonly address: string };
  readonly vfioPci: { readonly address: string };
  readonly nics: readonly [{ readonly process: { readonly address: string } }, { readonly process: { readonly address: string } }];
}): ExampleEnv {
  return {
    DMABUF_REGISTRY_ADDRESS: stack.registry.address,
    VFIO_PCI_ADDRESS: stack.vfioPci.address,
    PCI_EMU_ADDRESS: stack.pciEmu.address,
    RDMA_NIC_A_ADDRESS: stack.nics[0].process.address,
    RDMA_NIC_B_ADDRESS: stack.nics[1].process.address,
    P2P_SHM_DIR: stack.shmDir,
  };
}
