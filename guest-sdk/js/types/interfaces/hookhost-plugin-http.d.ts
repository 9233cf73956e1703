/** @module Interface hookhost:plugin/http@0.1.0 **/
/**
 * Sends a request and waits for the whole response.
 */
export function send(request: Request): Response;
/**
 * HTTP request methods.
 * # Variants
 * 
 * ## `"get"`
 * 
 * ## `"head"`
 * 
 * ## `"post"`
 * 
 * ## `"put"`
 * 
 * ## `"patch"`
 * 
 * ## `"delete"`
 */
export type Method = 'get' | 'head' | 'post' | 'put' | 'patch' | 'delete';
/**
 * An outbound request.
 */
export interface Request {
  method: Method,
  /**
   * An absolute http:// or https:// URL whose host is on the tenant's allow-list.
   */
  url: string,
  /**
   * Header names and values.
   */
  headers: Array<[string, string]>,
  /**
   * The body, if any.
   */
  body?: Uint8Array,
  /**
   * Per-request timeout in milliseconds; the host caps it at the tenant's limit.
   */
  timeoutMs?: number,
}
/**
 * The response to an outbound request. Any status code is a response, not an error.
 */
export interface Response {
  status: number,
  headers: Array<[string, string]>,
  body: Uint8Array,
}
/**
 * Why an outbound request did not produce a response.
 */
export type Error = ErrorDenied | ErrorInvalidRequest | ErrorTimeout | ErrorTransport | ErrorResponseTooLarge | ErrorTooManyRequests;
/**
 * The host is not on the tenant's allow-list (or is a forbidden address); says which.
 */
export interface ErrorDenied {
  tag: 'denied',
  val: string,
}
/**
 * The request is malformed (bad URL, bad header); says what.
 */
export interface ErrorInvalidRequest {
  tag: 'invalid-request',
  val: string,
}
/**
 * No response within the timeout.
 */
export interface ErrorTimeout {
  tag: 'timeout',
}
/**
 * The connection failed; says how.
 */
export interface ErrorTransport {
  tag: 'transport',
  val: string,
}
/**
 * The response body exceeded the tenant's limit (in bytes, given).
 */
export interface ErrorResponseTooLarge {
  tag: 'response-too-large',
  val: bigint,
}
/**
 * The attempt already made as many requests as the tenant's limit allows (given).
 */
export interface ErrorTooManyRequests {
  tag: 'too-many-requests',
  val: number,
}
