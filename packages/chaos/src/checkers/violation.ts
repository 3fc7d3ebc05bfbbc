/** What a checker found wrong, and the ops that show it. */
export interface Violation {
  /** The checker's name: "exactly-once", "payload", "revoke", "leak". */
  readonly checker: string;
  readonly message: string;
  /** Indexes of the ops that show it, first the one it is about. */
  readonly ops: readonly number[];
  /** When it happened (the first op's time), to attribute it to a fault window. */
  readonly time: number;
}
