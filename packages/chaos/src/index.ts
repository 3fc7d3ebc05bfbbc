export { type Op, type OpType, type OpPair, HistoryRecorder, NEMESIS, historyToJsonl, historyFromJsonl, pairs } from './history';
export type { Violation } from './checkers/violation';
export { checkExactlyOnce } from './checkers/exactly-once';
export { checkPayloads } from './checkers/payload';
export { checkRevokes } from './checkers/revoke';
export { checkLeaks } from './checkers/leaks';
export { faultRecords, type FaultRecord } from './checkers/recovery';
export { analyze, type CampaignResult, type ReportRow } from './report';
