import { createHash, randomBytes } from 'node:crypto';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { errno } from '@p2p/errno';

/** The shortest token accepted from configuration: 128 bits in base64url. */
const MIN_TOKEN_LENGTH = 22;
const MAX_TOKEN_LENGTH = 512;

/** A fresh unguessable token: 256 random bits, base64url. */
export function newToken(): string {
  return randomBytes(32).toString('base64url');
}

/** A token's SHA-256: equal-length values that timingSafeEqual can compare. */
export function tokenDigest(token: string): Buffer {
  return createHash('sha256').update(token).digest();
}

/**
 * The two secrets of one platform (one emulated host): the administrator's
 * credential and the one its services prove themselves with.
 */
export interface PlatformSecrets {
  readonly adminToken: string;
  readonly platformToken: string;
}

export const ADMIN_TOKEN_ENV = 'P2P_ADMIN_TOKEN';
export const PLATFORM_TOKEN_ENV = 'P2P_PLATFORM_TOKEN';
export const ADMIN_TOKEN_FILE = '.admin-token';
export const PLATFORM_TOKEN_FILE = '.platform-token';

/**
 * The platform's secrets: from P2P_ADMIN_TOKEN and P2P_PLATFORM_TOKEN when
 * set (a Kubernetes or compose secret), else from `.admin-token` and
 * `.platform-token` in `dir` (the segment directory every service of one host
 * shares), created with fresh random tokens, mode 0600, by whichever service
 * starts first. Whoever may read that directory holds the device memory
 * already, so holding its tokens grants nothing more.
 */
export function loadPlatformSecrets(dir: string, env: NodeJS.ProcessEnv = process.env): PlatformSecrets {
  return {
    adminToken: fromEnv(env, ADMIN_TOKEN_ENV) ?? sharedToken(path.join(dir, ADMIN_TOKEN_FILE)),
    platformToken: fromEnv(env, PLATFORM_TOKEN_ENV) ?? sharedToken(path.join(dir, PLATFORM_TOKEN_FILE)),
  };
}

/**
 * The administrator's credential as a client finds it: P2P_ADMIN_TOKEN, else
 * the `.admin-token` file the platform on `dir` made. Unlike
 * loadPlatformSecrets it creates nothing: ENOENT when no platform ran there.
 */
export function readAdminToken(dir: string, env: NodeJS.ProcessEnv = process.env): string {
  const configured = fromEnv(env, ADMIN_TOKEN_ENV);
  if (configured !== undefined) return configured;
  const file = path.join(dir, ADMIN_TOKEN_FILE);
  try {
    return readToken(file);
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'ENOENT') throw errno('ENOENT', `no ${file}: set ${ADMIN_TOKEN_ENV}, or name the platform's segment directory`);
    throw error;
  }
}

function fromEnv(env: NodeJS.ProcessEnv, name: string): string | undefined {
  const value = env[name];
  if (value === undefined || value === '') return undefined;
  checkToken(value, name);
  return value;
}

function checkToken(token: string, where: string): void {
  if (token.length < MIN_TOKEN_LENGTH || token.length > MAX_TOKEN_LENGTH || !/^[\x21-\x7e]+$/.test(token)) {
    throw errno('EINVAL', `${where}: a token is ${MIN_TOKEN_LENGTH} to ${MAX_TOKEN_LENGTH} printable ASCII characters without spaces`);
  }
}

/**
 * Reads the token in `file`, creating it first if missing. The new file is
 * written aside and linked into place, so a concurrent reader sees either
 * nothing or the whole token, and exactly one creator wins.
 */
function sharedToken(file: string): string {
  try {
    return readToken(file);
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code !== 'ENOENT') throw error;
  }
  const scratch = `${file}.${process.pid}.${randomBytes(4).toString('hex')}`;
  fs.writeFileSync(scratch, `${newToken()}\n`, { mode: 0o600, flag: 'wx' });
  try {
    fs.linkSync(scratch, file);
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code !== 'EEXIST') throw error;
  } finally {
    fs.unlinkSync(scratch);
  }
  return readToken(file);
}

function readToken(file: string): string {
  const token = fs.readFileSync(file, 'utf8').trim();
  checkToken(token, file);
  return token;
}
