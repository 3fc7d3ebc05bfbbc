export { eventTime, type EventTime } from './event-time';
export { OrderedEventHub, type EventListener, type Unnumbered } from './ordered-event-hub';
