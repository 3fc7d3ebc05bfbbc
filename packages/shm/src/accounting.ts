import * as fs from 'node:fs';
import * as path from 'node:path';
import { fsCall, fsErrno } from './fs-errno';
import { isValidSegmentName } from './segment-name';

export interface SegmentInfo {
  readonly name: string;
  /** The file's length: what the segment claims. */
  readonly size: number;
  /** st_blocks * 512: the tmpfs memory it really holds. Far below size when sparse. */
  readonly allocatedBytes: number;
}

/**
 * The segment files in `dir`, sorted by name, with their apparent and
 * allocated sizes, for leak and sparseness checks. Only regular files with
 * valid segment names count, so the hidden files of the directory (its
 * identity, the services' claim sockets) never do. A file that is unlinked
 * while being listed is skipped.
 *
 * Memory of an unlinked file that is still mapped is not counted here: tmpfs
 * frees it only when the mapping is collected (see Segment).
 */
export function listSegmentFiles(dir: string): SegmentInfo[] {
  const entries = fsCall(() => fs.readdirSync(dir, { withFileTypes: true }), `readdir ${dir}`);
  const infos: SegmentInfo[] = [];
  for (const entry of entries) {
    if (!entry.isFile() || !isValidSegmentName(entry.name)) continue;
    const stat = lstatIfPresent(path.join(dir, entry.name));
    if (stat === undefined) continue;
    infos.push({ name: entry.name, size: stat.size, allocatedBytes: stat.blocks * 512 });
  }
  return infos.sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
}

/** Total allocated bytes of the segment files in `dir`. */
export function allocatedBytes(dir: string): number {
  return listSegmentFiles(dir).reduce((sum, info) => sum + info.allocatedBytes, 0);
}

function lstatIfPresent(file: string): fs.Stats | undefined {
  try {
    return fs.lstatSync(file);
  } catch (err) {
    const failure = fsErrno(err, `lstat ${file}`);
    if (failure.errno === 'ENOENT') return undefined;
    throw failure;
  }
}
