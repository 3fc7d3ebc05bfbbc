/** The verbs enums: one copy, in @p2p/verbs, shared with the NIC's users. */
export { QpState, WrOpcode, WcOpcode, WcStatus, AsyncEventType } from '@p2p/verbs';
