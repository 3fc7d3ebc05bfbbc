export { type Op, type OpType, type OpPair, HistoryRecorder, NEMESIS, historyToJsonl, historyFromJsonl, pairs } from './history';
export type { Violation } from './checkers/violation';
export { checkExactlyOnce } from './checkers/exactly-once';
export { checkPayloads } from './checkers/payload';
export { checkRevokes } from './checkers/revoke';
export { checkLeaks } from './checkers/leaks';
export { faultRecords, type FaultRecord } from './checkers/recovery';
export { analyze, type CampaignResult, type ReportRow } from './report';
export { Prng } from './plan/prng';
export { FAULT_KINDS, type FaultKind, isFaultKind, SERVICES, type ServiceName, DEVICE_FAULT_HEALS, type ScheduledFault, type ScheduleOptions, nemesisSchedule } from './plan/schedule';
export {
  QUEUES,
  type QueueName,
  type PlannedRequest,
  type PlannedRevoke,
  type WorkloadShape,
  DEFAULT_SHAPE,
  requestPlan,
  revokePlan,
  payloadOf,
  digestOf,
  WORKLOADS,
  type WorkloadName,
  isWorkloadName,
  type DmaTarget,
  type PlannedCopy,
  copyPlan,
  type PlannedBlockIo,
  blockIoPlan,
} from './plan/workload-plan';
export type { Deployment, Driver } from './driver/driver';
export { LocalDriver } from './driver/local-driver';
export { ComposeDriver, type ComposeTarget } from './driver/compose-driver';
export { type ComposeProject, type CommandLine, COMPOSE_SERVICES, composeCommand, composeFaults, networkCommand, gatewayRun, dialAddress } from './driver/compose-commands';
export { type SegmentFiles, localSegmentFiles } from './driver/segment-files';
export { PLANTS, type Plant, type CampaignOptions, type CampaignRun, type FaultEvent, runCampaign, plantLostCompletion } from './campaign';
