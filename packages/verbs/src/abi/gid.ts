import { errno } from '@p2p/errno';

/**
 * GIDs as text: a GID is 16 bytes in the format of an IPv6 address (IBA
 * chapter 4; RoCEv2: the port's IP address). One spelling for the NICs, which
 * compare GIDs as strings, and for every tool that shows them.
 */
export const GID_BYTES = 16;

const V4_MAPPED_PREFIX = [0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff];

/**
 * The 16 bytes of a GID written as IPv6 text ("::ffff:127.0.0.2",
 * "fe80::1"), with an embedded dotted IPv4 tail allowed. EINVAL otherwise.
 */
export function gidBytes(gid: string): Buffer {
  const bad = (): Error => errno('EINVAL', `GID "${gid}" is not an IPv6 address`);
  const halves = gid.split('::');
  if (halves.length > 2) throw bad();
  const groups = halves.map((half) => (half === '' ? [] : parseGroups(half, bad)));
  const head = groups[0]!;
  const tail = groups[1] ?? [];
  const missing = 8 - head.length - tail.length;
  if (halves.length === 1 ? missing !== 0 : missing < 1) throw bad();
  const words = [...head, ...new Array<number>(halves.length === 1 ? 0 : missing).fill(0), ...tail];
  const bytes = Buffer.alloc(GID_BYTES);
  words.forEach((word, i) => bytes.writeUInt16BE(word, 2 * i));
  return bytes;
}

/** 16-bit groups of one side of "::"; a dotted IPv4 address may end the address. */
function parseGroups(text: string, bad: () => Error): number[] {
  const parts = text.split(':');
  const words: number[] = [];
  parts.forEach((part, i) => {
    if (i === parts.length - 1 && part.includes('.')) {
      const [a, b, c, d] = ipv4Octets(part, bad);
      words.push((a << 8) | b, (c << 8) | d);
    } else if (/^[0-9a-fA-F]{1,4}$/.test(part)) {
      words.push(parseInt(part, 16));
    } else {
      throw bad();
    }
  });
  return words;
}

function ipv4Octets(text: string, bad: () => Error): [number, number, number, number] {
  const octets = text.split('.');
  if (octets.length !== 4 || !octets.every((o) => /^(0|[1-9][0-9]{0,2})$/.test(o) && Number(o) < 256)) throw bad();
  return octets.map(Number) as [number, number, number, number];
}

/**
 * The canonical text of 16 GID bytes: "::ffff:a.b.c.d" for an IPv4-mapped
 * GID (what RoCEv2 derives from an IPv4 address), else RFC 5952 (lower case,
 * the longest run of two or more zero groups as "::"). Both NICs of a
 * connection must spell a GID the same way: the responder compares the
 * requester's GID with the QP's dgid as strings.
 */
export function gidText(bytes: Uint8Array): string {
  if (bytes.length !== GID_BYTES) throw errno('EINVAL', `a GID is ${GID_BYTES} bytes, not ${bytes.length}`);
  if (V4_MAPPED_PREFIX.every((byte, i) => bytes[i] === byte)) return `::ffff:${bytes[12]}.${bytes[13]}.${bytes[14]}.${bytes[15]}`;
  const words = Array.from({ length: 8 }, (_, i) => (bytes[2 * i]! << 8) | bytes[2 * i + 1]!);
  let runStart = -1;
  let runLength = 0;
  for (let i = 0; i < 8; ) {
    let j = i;
    while (j < 8 && words[j] === 0) j++;
    if (j - i > runLength && j - i >= 2) {
      runStart = i;
      runLength = j - i;
    }
    i = j === i ? i + 1 : j;
  }
  const hex = (list: number[]): string => list.map((word) => word.toString(16)).join(':');
  if (runStart < 0) return hex(words);
  return `${hex(words.slice(0, runStart))}::${hex(words.slice(runStart + runLength))}`;
}

/** A GID in canonical text (see gidText). */
export function canonicalGid(gid: string): string {
  return gidText(gidBytes(gid));
}
