import { errno } from '@p2p/errno';

/** NAME_MAX on Linux: a longer name could not be a file in the directory anyway. */
export const MAX_SEGMENT_NAME_LENGTH = 255;

const SEGMENT_NAME = /^[A-Za-z0-9_-][A-Za-z0-9._-]*$/;

/**
 * True if `name` can only ever denote a file directly inside the segment
 * directory: no separators, no leading dot (so neither `.`, `..` nor hidden
 * files), and no `..` anywhere so nothing looks like a traversal in logs.
 */
export function isValidSegmentName(name: string): boolean {
  return (
    typeof name === 'string' &&
    name.length <= MAX_SEGMENT_NAME_LENGTH &&
    SEGMENT_NAME.test(name) &&
    !name.includes('..')
  );
}

/** Returns `name` if valid, else throws EINVAL. */
export function validateSegmentName(name: string): string {
  if (!isValidSegmentName(name)) {
    throw errno(
      'EINVAL',
      `segment name ${JSON.stringify(name)} must be 1-${MAX_SEGMENT_NAME_LENGTH} of [A-Za-z0-9._-], not start with '.' nor contain '..'`,
    );
  }
  return name;
}
