import * as fs from 'node:fs';
import * as path from 'node:path';
import { errno, isErrnoName, type ErrnoError } from '@p2p/errno';
import { validateSegmentName } from '@p2p/shm';
import type { OwnerExtent } from '../owners/file-owner';
import { sliceExtents } from './extents';
import type { SegmentAccess } from './segment-access';

// O_NOFOLLOW: a symlink planted in an owner's directory must not redirect the access.
const OPEN_FLAGS = fs.constants.O_RDWR | fs.constants.O_NOFOLLOW;

/**
 * SegmentAccess on segment files this process can open: pread and pwrite
 * through a descriptor opened per piece and closed at once. Nothing is
 * mapped or kept open, so a segment the owner unlinks (a fence relocating
 * the memory) is let go immediately, and a write never grows a file: a
 * segment shorter than its extent says is EIO.
 */
export class SegmentFileAccess implements SegmentAccess {
  read(directory: string, extents: readonly OwnerExtent[], offset: number, length: number): Buffer {
    const out = Buffer.alloc(length);
    let done = 0;
    for (const piece of sliceExtents(extents, offset, length)) {
      withSegment(directory, piece, (fd, file) => {
        for (let at = 0; at < piece.length; ) {
          const n = fsCall(() => fs.readSync(fd, out, done + at, piece.length - at, piece.segmentOffset + at), `pread ${file}`);
          if (n === 0) throw errno('EIO', `${file} ended at ${piece.segmentOffset + at}`);
          at += n;
        }
      });
      done += piece.length;
    }
    return out;
  }

  write(directory: string, extents: readonly OwnerExtent[], offset: number, data: Uint8Array): void {
    let done = 0;
    for (const piece of sliceExtents(extents, offset, data.length)) {
      withSegment(directory, piece, (fd, file) => {
        for (let at = 0; at < piece.length; ) {
          at += fsCall(() => fs.writeSync(fd, data, done + at, piece.length - at, piece.segmentOffset + at), `pwrite ${file}`);
        }
      });
      done += piece.length;
    }
  }
}

/** Opens the piece's segment, checks it holds the piece, runs `io`, closes. */
function withSegment(directory: string, piece: OwnerExtent, io: (fd: number, file: string) => void): void {
  const file = path.join(directory, validateSegmentName(piece.segment));
  const fd = fsCall(() => fs.openSync(file, OPEN_FLAGS), `open ${file}`);
  try {
    const size = fsCall(() => fs.fstatSync(fd), `fstat ${file}`).size;
    if (piece.segmentOffset + piece.length > size) {
      throw errno('EIO', `${file} has ${size} bytes, the extent needs ${piece.segmentOffset + piece.length}`);
    }
    io(fd, file);
  } finally {
    fs.closeSync(fd);
  }
}

/** Runs one fs call, rethrowing its failure with the syscall's errno name (EIO for names the model lacks). */
function fsCall<T>(call: () => T, detail: string): T {
  try {
    return call();
  } catch (err) {
    throw fsErrno(err, detail);
  }
}

function fsErrno(err: unknown, detail: string): ErrnoError {
  if (err instanceof Error && 'code' in err && typeof err.code === 'string') {
    return isErrnoName(err.code) ? errno(err.code, detail) : errno('EIO', `${detail} (${err.code})`);
  }
  return errno('EIO', `${detail}: ${err instanceof Error ? err.message : String(err)}`);
}
