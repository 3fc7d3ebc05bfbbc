/**
 * A u64 address from the wire as the model's number, or undefined past
 * 2^53 - 1: the model's addresses are safe integers (an MR's iova is one,
 * checkRegMr()), and rounding a larger one could land it inside an MR.
 */
export function u64Address(value: bigint): number | undefined {
  return value <= BigInt(Number.MAX_SAFE_INTEGER) ? Number(value) : undefined;
}
