/** @module Interface hookhost:plugin/kv@0.1.0 **/
/**
 * Returns the value stored under `key`, if any.
 */
export function get(key: string): Uint8Array | undefined;
/**
 * Stores `value` under `key`, replacing any previous value.
 */
export function set(key: string, value: Uint8Array): void;
/**
 * Removes `key`; returns whether it existed.
 */
export { _delete as delete };
function _delete(key: string): boolean;
/**
 * Lists the keys that start with `prefix`, in ascending byte order, at most `limit` of them.
 */
export function listKeys(prefix: string, limit: number): Array<string>;
/**
 * Stores `value` under `key` only when the key is absent; returns whether it stored it.
 * Use it to do something once per order (e.g. send one notice).
 */
export function setIfAbsent(key: string, value: Uint8Array): boolean;
/**
 * Why a kv operation was refused.
 */
export type Error = ErrorInvalidKey | ErrorValueTooLarge | ErrorTooManyKeys | ErrorStorage;
/**
 * The key is empty or longer than the host allows (the limit is given).
 */
export interface ErrorInvalidKey {
  tag: 'invalid-key',
  val: number,
}
/**
 * The value is larger than the tenant's limit (in bytes, given).
 */
export interface ErrorValueTooLarge {
  tag: 'value-too-large',
  val: bigint,
}
/**
 * The tenant already has as many keys as its limit allows (given).
 */
export interface ErrorTooManyKeys {
  tag: 'too-many-keys',
  val: bigint,
}
/**
 * The store failed; the message says how. The attempt may be retried.
 */
export interface ErrorStorage {
  tag: 'storage',
  val: string,
}
