import { execFile, spawn } from 'node:child_process';
import * as path from 'node:path';
import { expect } from 'chai';
import type { RdmaStack } from './rdma-hosts';

/** The `p2p` command as npm ci installs it (node_modules/.bin/p2p links to this file). */
export const P2P_BIN = path.resolve(__dirname, '../../../packages/cli/bin/p2p.js');

export interface CliRun {
  readonly code: number;
  readonly stdout: string;
  readonly stderr: string;
}

/** The environment that points `p2p` at a stack of processes: its addresses and its segment directory. */
export function cliEnv(stack: RdmaStack, more: NodeJS.ProcessEnv = {}): NodeJS.ProcessEnv {
  return {
    PATH: process.env.PATH,
    P2P_SHM_DIR: stack.shmDir,
    PCI_EMU_ADDRESS: stack.pciEmu.address,
    VFIO_PCI_ADDRESS: stack.vfioPci.address,
    DMABUF_REGISTRY_ADDRESS: stack.registry.address,
    RDMA_NIC_ADDRESSES: stack.nics.map((nic) => nic.process.address).join(','),
    ...more,
  };
}

/** Runs the real binary with `args` and resolves with its exit status and output. */
export function runP2p(env: NodeJS.ProcessEnv, args: readonly string[], input?: string): Promise<CliRun> {
  return new Promise((resolve) => {
    if (input === undefined) {
      execFile(process.execPath, [P2P_BIN, ...args], { env, timeout: 60_000 }, (error, stdout, stderr) => {
        resolve({ code: error === null ? 0 : typeof error.code === 'number' ? error.code : -1, stdout, stderr });
      });
      return;
    }
    const child = spawn(process.execPath, [P2P_BIN, ...args], { env, stdio: ['pipe', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (chunk: Buffer) => (stdout += chunk.toString()));
    child.stderr.on('data', (chunk: Buffer) => (stderr += chunk.toString()));
    child.on('close', (code) => resolve({ code: code ?? -1, stdout, stderr }));
    child.stdin.end(input);
  });
}

/** `p2p --json ...`, expected to succeed, parsed. */
export async function runP2pJson<T>(env: NodeJS.ProcessEnv, args: readonly string[]): Promise<T> {
  const run = await runP2p(env, ['--json', ...args]);
  expect(run.code, `p2p ${args.join(' ')}: ${run.stderr}`).to.equal(0);
  return JSON.parse(run.stdout) as T;
}
