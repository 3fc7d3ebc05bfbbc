import { errno } from '@p2p/errno';

/**
 * Who is calling, as proven by the call's credential:
 * - `process`: a registry session's credential; the kernel's `current`.
 * - `platform`: a service of the platform itself (vfio-pci, rdma-nic, the
 *   registry calling pci-emu): the kernel acting on a process's behalf.
 * - `admin`: the administrator, root: sees every process and may act in any
 *   (as ptrace and pidfd_getfd let root do).
 * - `anonymous`: no credential. May open a session and read the topology.
 */
export type Caller =
  | { readonly kind: 'anonymous' }
  | { readonly kind: 'process'; readonly pid: number }
  | { readonly kind: 'platform' }
  | { readonly kind: 'admin' };

export const ANONYMOUS: Caller = { kind: 'anonymous' };
export const PLATFORM: Caller = { kind: 'platform' };
export const ADMIN: Caller = { kind: 'admin' };

/** True for the roles that stand above processes: the platform and the administrator. */
export function isPrivileged(caller: Caller): boolean {
  return caller.kind === 'platform' || caller.kind === 'admin';
}

/**
 * The pid a call acts in. A process acts only as itself: `pid` may be 0 (the
 * caller) or its own pid; naming another is EPERM, as is acting as a process
 * without proving one. The platform and the administrator name the process
 * they act in, so for them `pid` 0 is EINVAL.
 */
export function actingPid(caller: Caller, pid: number, what: string): number {
  switch (caller.kind) {
    case 'process':
      if (pid !== 0 && pid !== caller.pid) throw errno('EPERM', `${what}: pid ${pid} is not the caller (pid ${caller.pid})`);
      return caller.pid;
    case 'platform':
    case 'admin':
      if (pid === 0) throw errno('EINVAL', `${what}: name the process to act in (pid is 0)`);
      return pid;
    case 'anonymous':
      throw errno('EPERM', `${what} acts as a process: open a session and send its credential as 'authorization: Bearer <credential>'`);
  }
}

/**
 * Raw access to the platform (pci-emu's hardware, owner sessions, debugfs
 * views) is the platform's and the administrator's: EACCES for anyone else,
 * as opening a sysfs resource file or debugfs is for a user who is not root.
 */
export function requirePrivileged(caller: Caller, what: string): void {
  if (!isPrivileged(caller)) throw errno('EACCES', `${what} is for the platform and the administrator (${describe(caller)})`);
}

/** Administration only (fault rules and the like): EACCES for anyone else. */
export function requireAdmin(caller: Caller, what: string): void {
  if (caller.kind !== 'admin') throw errno('EACCES', `${what} needs the administrator credential (${describe(caller)})`);
}

/** Whether `caller` may see what process `pid` holds (its fds, as /proc/<pid>/fd). */
export function maySee(caller: Caller, pid: number): boolean {
  return isPrivileged(caller) || (caller.kind === 'process' && caller.pid === pid);
}

export function describe(caller: Caller): string {
  return caller.kind === 'process' ? `the caller is pid ${caller.pid}` : `the caller is ${caller.kind}`;
}
