/**
 * What the Docker tests (compose, swarm) share: running the docker CLI, the
 * repository root the images are built from, whether an engine answers, and
 * the base image for deploy/Dockerfile. No test needs a registry: without
 * node:20-bookworm-slim present, deploy/scripts/build-base-image.sh builds a
 * local base from this machine's node.
 */
import { execFile } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';

export const LOCAL_BASE_IMAGE = 'p2p-dmabuf/node-base:20';
const REGISTRY_BASE_IMAGE = 'node:20-bookworm-slim';

export interface RunResult {
  ok: boolean;
  stdout: string;
  stderr: string;
}

/** Runs `file` with `args`; never rejects: a failure (exit code, timeout) is `ok: false` with its stderr. */
export function run(file: string, args: string[], timeoutMs: number, cwd?: string, env?: Record<string, string>): Promise<RunResult> {
  return new Promise((resolve) => {
    execFile(file, args, { timeout: timeoutMs, cwd, maxBuffer: 16 * 1024 * 1024, env: { ...process.env, ...env } }, (error, stdout, stderr) => {
      resolve({ ok: error === null, stdout: String(stdout), stderr: String(stderr || (error ? error.message : '')) });
    });
  });
}

/** The repository root: the nearest directory above this file holding docker-compose.yml. */
export function repoRoot(): string {
  for (let dir = __dirname; ; dir = path.dirname(dir)) {
    if (fs.existsSync(path.join(dir, 'docker-compose.yml'))) return dir;
    if (path.dirname(dir) === dir) throw new Error(`no docker-compose.yml above ${__dirname}`);
  }
}

/** Why Docker can't be used here ("Docker engine not reachable (docker info: ...)"), or undefined when it can. */
export async function dockerUnavailable(): Promise<string | undefined> {
  const info = await run('docker', ['info', '--format', '{{.ServerVersion}}'], 15_000);
  if (!info.ok || info.stdout.trim() === '') {
    return `Docker engine not reachable (docker info: ${info.stderr.trim().split('\n')[0] ?? 'failed'})`;
  }
  return undefined;
}

export async function imageExists(image: string): Promise<boolean> {
  return (await run('docker', ['image', 'inspect', image], 15_000)).ok;
}

/** BASE_IMAGE if set; else node:20-bookworm-slim if present; else the local base, built when missing. */
export async function baseImage(root: string): Promise<string> {
  const configured = process.env.BASE_IMAGE;
  if (configured !== undefined && configured !== '') return configured;
  if (await imageExists(REGISTRY_BASE_IMAGE)) return REGISTRY_BASE_IMAGE;
  if (!(await imageExists(LOCAL_BASE_IMAGE))) {
    const built = await run('bash', [path.join(root, 'deploy/scripts/build-base-image.sh')], 120_000, root);
    if (!built.ok) throw new Error(`deploy/scripts/build-base-image.sh failed: ${built.stderr}`);
  }
  return LOCAL_BASE_IMAGE;
}

/** Builds deploy/Dockerfile from the built workspace at `root` as `tag`, on `base`. */
export async function buildServicesImage(root: string, tag: string, base: string): Promise<void> {
  const built = await run('docker', ['build', '-q', '-f', 'deploy/Dockerfile', '--build-arg', `BASE_IMAGE=${base}`, '-t', tag, '.'], 300_000, root);
  if (!built.ok) throw new Error(`docker build of ${tag} on ${base} failed: ${built.stderr}`);
}
