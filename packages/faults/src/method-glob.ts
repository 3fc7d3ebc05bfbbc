/** Tells whether a gRPC full method name matches one compiled pattern. */
export type MethodMatcher = (method: string) => boolean;

/**
 * Compiles a method pattern in which `*` matches any run of characters
 * (the empty one too) and every other character stands for itself.
 *
 * Not a RegExp: `^.*.*.*Z$` backtracks exponentially in the number of stars
 * (a 10-character pattern stalled each call for over a minute), and a long
 * pattern throws "Regular expression too large" on the call that runs it.
 * Here the text before the first star must be a prefix, the text after the
 * last star a suffix, and each segment between them is found left to right
 * with indexOf. Taking the leftmost place for a segment leaves the longest
 * remainder for the segments after it, so if any placement matches, the
 * leftmost one does: no backtracking, one forward pass over the method.
 */
export function compileMethodGlob(pattern: string): MethodMatcher {
  const segments = pattern.split('*');
  if (segments.length === 1) return (method) => method === pattern;
  const head = segments[0];
  const tail = segments[segments.length - 1];
  // A run of stars splits into empty segments; it matches what one star does.
  const middle = segments.slice(1, -1).filter((segment) => segment.length > 0);
  const literalLength = head.length + tail.length + middle.reduce((sum, segment) => sum + segment.length, 0);
  return (method) => {
    if (method.length < literalLength || !method.startsWith(head) || !method.endsWith(tail)) return false;
    // The middle segments live between the prefix and the suffix, never inside them.
    const end = method.length - tail.length;
    let from = head.length;
    for (const segment of middle) {
      const at = method.indexOf(segment, from);
      if (at < 0 || at + segment.length > end) return false;
      from = at + segment.length;
    }
    return true;
  };
}
