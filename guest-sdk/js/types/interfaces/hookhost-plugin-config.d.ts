/** @module Interface hookhost:plugin/config@0.1.0 **/
/**
 * The value of a configured key (e.g. "backend-url"), if set.
 */
export function get(key: string): string | undefined;
/**
 * The value of a configured secret (e.g. an API key for the merchant's backend), if set.
 * Secrets are never logged or shown by the admin API.
 */
export function getSecret(key: string): string | undefined;
