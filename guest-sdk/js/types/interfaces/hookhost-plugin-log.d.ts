/** @module Interface hookhost:plugin/log@0.1.0 **/
/**
 * Writes one line. Lines beyond the tenant's per-attempt log budget are dropped (the host
 * records that it dropped them).
 */
export function write(level: Level, message: string): void;
/**
 * Severity of a log line.
 * # Variants
 * 
 * ## `"trace"`
 * 
 * ## `"debug"`
 * 
 * ## `"info"`
 * 
 * ## `"warn"`
 * 
 * ## `"error"`
 */
export type Level = 'trace' | 'debug' | 'info' | 'warn' | 'error';
