/** @module Interface hookhost:plugin/types@0.1.0 **/
/**
 * What kind of thing happened at the provider.
 * # Variants
 * 
 * ## `"order-status-changed"`
 * 
 * An order moved to another status (Fincart "Order Status Changed", Selldone state triggers).
 * ## `"order-updated"`
 * 
 * An order's details changed but its status did not (Fincart "Order Updated").
 * ## `"payment"`
 * 
 * A payment for an order (Sevi order payment, Selldone PaymentOrder).
 * ## `"payout"`
 * 
 * A payout / fulfillment to a beneficiary (Juspay payout).
 * ## `"transaction"`
 * 
 * A money transaction (FinchPay).
 * ## `"other"`
 * 
 * Anything else; look at `raw-status` and `payload`.
 */
export type EventKind = 'order-status-changed' | 'order-updated' | 'payment' | 'payout' | 'transaction' | 'other';
/**
 * hookhost's provider-independent reading of the provider's status. Providers add statuses over
 * time: a value hookhost does not know maps to `unknown`, and `raw-status` keeps the original.
 * # Variants
 * 
 * ## `"pending"`
 * 
 * Created or waiting; nothing has happened yet.
 * ## `"processing"`
 * 
 * Under way (shipping, in review, being sent).
 * ## `"succeeded"`
 * 
 * Finished successfully (delivered, paid, payout succeeded).
 * ## `"failed"`
 * 
 * Finished unsuccessfully (delivery failed, payment or payout failed, reversed).
 * ## `"cancelled"`
 * 
 * Cancelled by the merchant, the customer or the provider.
 * ## `"refunded"`
 * 
 * Money went back to the payer.
 * ## `"unknown"`
 * 
 * hookhost does not know this provider status; read `raw-status`.
 */
export type CanonicalStatus = 'pending' | 'processing' | 'succeeded' | 'failed' | 'cancelled' | 'refunded' | 'unknown';
/**
 * An amount of money, exactly as the provider sent it: a decimal string, never a float.
 */
export interface Money {
  /**
   * Decimal number as text, e.g. "10", "199.99", "-5.10".
   */
  amount: string,
  /**
   * ISO 4217 code when the provider sends one, e.g. "EGP", "INR".
   */
  currency?: string,
}
/**
 * One webhook, normalized. Every provider's payload becomes this shape; the original is kept in
 * `payload` for anything the normalized fields do not carry.
 */
export interface Event {
  /**
   * The dedupe key: the same provider notification always has the same id, and hookhost never
   * hands two events with the same id (per tenant and source) to a plugin as separate events.
   */
  id: string,
  /**
   * The tenant (merchant) this event belongs to.
   */
  tenant: string,
  /**
   * The source (a configured provider endpoint of the tenant) that received it.
   */
  source: string,
  /**
   * The provider's name, e.g. "fincart", "juspay".
   */
  provider: string,
  /**
   * What happened.
   */
  kind: EventKind,
  /**
   * The order's id at the provider, when the payload has one.
   */
  orderId?: string,
  /**
   * The merchant's own order reference (e.g. the shop's order number), when sent.
   */
  merchantRef?: string,
  /**
   * hookhost's canonical status.
   */
  status: CanonicalStatus,
  /**
   * The provider's status, verbatim.
   */
  rawStatus?: string,
  /**
   * The provider's sub-status, verbatim (e.g. Fincart "out for delivery").
   */
  rawSubStatus?: string,
  /**
   * The provider's reason, verbatim (e.g. a rejection or failure reason).
   */
  reason?: string,
  /**
   * The amount, when the provider sends one.
   */
  amount?: Money,
  /**
   * When it happened at the provider, in milliseconds since the Unix epoch, when sent.
   */
  occurredAtMs?: bigint,
  /**
   * When hookhost accepted the webhook, in milliseconds since the Unix epoch.
   */
  receivedAtMs: bigint,
  /**
   * Which attempt this is: 1 for the first delivery to the plugin, 2 for the first retry, ...
   */
  attempt: number,
  /**
   * The provider's JSON body, verbatim.
   */
  payload: string,
}
/**
 * What the plugin did with an event.
 */
export type Outcome = OutcomeDone | OutcomeSkipped | OutcomeRetryAfter;
/**
 * Handled. hookhost commits the attempt's kv writes and records success.
 */
export interface OutcomeDone {
  tag: 'done',
}
/**
 * Deliberately not handled (e.g. a status the merchant does not care about), with why.
 * Recorded as a success; kv writes are committed.
 */
export interface OutcomeSkipped {
  tag: 'skipped',
  val: string,
}
/**
 * Try again in this many seconds (e.g. the merchant's backend is down). kv writes of this
 * attempt are discarded. Counts as an attempt.
 */
export interface OutcomeRetryAfter {
  tag: 'retry-after',
  val: number,
}
