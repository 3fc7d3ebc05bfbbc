/** struct ibv_wc: one copy, in @p2p/verbs. */
export type { WorkCompletion } from '@p2p/verbs';
