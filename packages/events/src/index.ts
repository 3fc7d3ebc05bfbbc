export { OrderedEventHub, type EventListener, type Unnumbered } from './ordered-event-hub';
