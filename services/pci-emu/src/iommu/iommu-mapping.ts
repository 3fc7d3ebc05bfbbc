/** `length` bytes at `offset` of a segment file in the segment directory: host memory, as the registry's heap hands it out. */
export interface HostExtent {
  readonly segment: string;
  readonly offset: number;
  readonly length: number;
}

/** What a mapping's IOVAs lead to: host memory laid end to end, or a peer's memory BAR from `offset`. */
export type MappingTarget =
  | { readonly kind: 'host'; readonly extents: readonly HostExtent[] }
  | { readonly kind: 'bar'; readonly bdf: string; readonly bar: number; readonly offset: number };

/** One iommu_map() that is still (wholly or in part) in place: [iova, iova + length) with prot IOMMU_READ/IOMMU_WRITE. */
export interface IommuMapping {
  readonly iova: number;
  readonly length: number;
  readonly prot: number;
  readonly target: MappingTarget;
}

/** The host extents of bytes [offset, offset + length) of a run of extents laid end to end. */
export function sliceExtents(extents: readonly HostExtent[], offset: number, length: number): HostExtent[] {
  const pieces: HostExtent[] = [];
  const end = offset + length;
  let start = 0;
  for (const extent of extents) {
    const from = Math.max(offset, start);
    const to = Math.min(end, start + extent.length);
    if (from < to) pieces.push({ segment: extent.segment, offset: extent.offset + from - start, length: to - from });
    start += extent.length;
    if (start >= end) break;
  }
  return pieces;
}

/** The target of bytes [offset, offset + length) of a mapping's target. */
export function sliceTarget(target: MappingTarget, offset: number, length: number): MappingTarget {
  return target.kind === 'host'
    ? { kind: 'host', extents: sliceExtents(target.extents, offset, length) }
    : { ...target, offset: target.offset + offset };
}

/** The part [from, to) of a mapping (IOVAs inside it), with its target cut to match. */
export function subMapping(mapping: IommuMapping, from: number, to: number): IommuMapping {
  return {
    iova: from,
    length: to - from,
    prot: mapping.prot,
    target: sliceTarget(mapping.target, from - mapping.iova, to - from),
  };
}

/** The segment names a target holds open, once per extent. */
export function heldSegments(target: MappingTarget): string[] {
  return target.kind === 'host' ? target.extents.map((extent) => extent.segment) : [];
}
