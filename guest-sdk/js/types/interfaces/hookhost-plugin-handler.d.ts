/** @module Interface hookhost:plugin/handler@0.1.0 **/
/**
 * Called once per event, in a fresh instance. Events of the same order (per tenant) arrive in
 * the order hookhost received them; different orders may be handled concurrently.
 * 
 * Return `err` with a message when the event could not be handled: hookhost records the message
 * and retries with backoff, like a trap. A trap (panic), running out of time or memory are
 * errors too.
 */
export function handle(event: Event): Outcome;
export type Event = import('./hookhost-plugin-types.js').Event;
export type Outcome = import('./hookhost-plugin-types.js').Outcome;
