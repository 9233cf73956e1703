// hookhost's guest helpers for JavaScript plugins: the same conveniences as the Rust SDK
// (hookhost-guest) over the raw `hookhost:plugin@0.1.0` imports that componentize-js generates
// from the WIT. Nothing here is required: a plugin may use the raw imports directly.
//
//   import { plugin, kv, http, config, log, done, skipped } from "./hookhost.js";
//   export const handler = plugin((event) => { ... return done(); });
//
// What it adds: an event with plain numbers for times and `orderKey`/`payloadJson()`; kv values as
// JSON or text; `http.postJson` with `errorForStatus`; `config.require`; `log.info(...)`; and any
// error thrown in the handler (including a refused kv or http call) becomes the attempt's error
// message, so hookhost records why and retries.
//
// Types for editors: `types/` holds TypeScript declarations generated from the WIT by jco
// (`jco types wit/v0.1.0 --world-name merchant-plugin -o guest-sdk/js/types`; the released WIT is
// frozen, so they are too); the JSDoc below refers to them.
import * as rawKv from "hookhost:plugin/kv@0.1.0";
import * as rawHttp from "hookhost:plugin/http@0.1.0";
import * as rawConfig from "hookhost:plugin/config@0.1.0";
import { write } from "hookhost:plugin/log@0.1.0";

/** @typedef {import("./types/interfaces/hookhost-plugin-types.js").Event} WitEvent */
/** @typedef {import("./types/interfaces/hookhost-plugin-types.js").Outcome} Outcome */
/**
 * The event a handler gets: the WIT record (camelCase fields, enums as strings) with plain-number
 * times and a few conveniences.
 * @typedef {Omit<WitEvent, "occurredAtMs" | "receivedAtMs"> & {
 *   occurredAtMs?: number, receivedAtMs: number, orderKey?: string, at: number,
 *   payloadJson: () => any }} HookhostEvent
 */

const encoder = new TextEncoder();
const decoder = new TextDecoder();

/** Bytes of a string, a Uint8Array, or anything else as JSON text. */
function bytes(value) {
  if (value instanceof Uint8Array) return value;
  if (typeof value === "string") return encoder.encode(value);
  return encoder.encode(JSON.stringify(value));
}

/** The WIT error variants as readable text: `{tag: "denied", val: "…"}` → "denied: …". */
function describe(error) {
  if (typeof error === "string") return error;
  const payload = error?.payload;
  if (payload && typeof payload === "object" && "tag" in payload) {
    return payload.val === undefined ? payload.tag : `${payload.tag}: ${payload.val}`;
  }
  if (error instanceof Error) return error.message || String(error);
  return String(error);
}

/**
 * Where an Error was thrown in the plugin's own code (this helper's frames left out), innermost
 * first, at most 5 lines `  at handler (app.js:12:5)`; "" without a stack (a thrown string).
 */
function where(error) {
  const stack = typeof error?.stack === "string" ? error.stack : "";
  const frames = stack
    .split("\n")
    .map((line) => line.trim())
    .filter((line) => line.includes("@"))
    .map((line) => {
      const at = line.lastIndexOf("@");
      // SpiderMonkey names an arrow function passed from `handler` `handler<`.
      const fn = line.slice(0, at).replace(/<+$/, "");
      return { fn: fn || "<anonymous>", place: sourceName(line.slice(at + 1)) };
    })
    // Not this helper's frames, nor componentize-js's generated glue.
    .filter((frame) => !/(^|\/)(hookhost|initializer)\.js:/.test(frame.place))
    .slice(0, 5)
    .map((frame) => `  at ${frame.fn} (${frame.place})`);
  return frames.length ? "\n" + frames.join("\n") : "";
}

/** A stack frame's file as the merchant knows it: relative to the project. */
function sourceName(place) {
  return place.replace(/^file:\/\//, "").replace(/^\/+/, "");
}

/** Runs `what`, turning a refused host call into an Error that says which call and why. */
function call(what, fn) {
  try {
    return fn();
  } catch (e) {
    throw new Error(`${what}: ${describe(e)}`);
  }
}

/** Outcomes: return one of these from the handler. */
export const done = () => ({ tag: "done" });
export const skipped = (reason) => ({ tag: "skipped", val: String(reason) });
export const retryAfter = (seconds) => ({ tag: "retry-after", val: Math.max(0, Math.floor(seconds)) });

/**
 * The event as plain JavaScript: u64 times as numbers, plus `orderKey` and `payloadJson()`.
 * @param {WitEvent} event
 * @returns {HookhostEvent}
 */
export function wrapEvent(event) {
  return {
    ...event,
    occurredAtMs: event.occurredAtMs === undefined ? undefined : Number(event.occurredAtMs),
    receivedAtMs: Number(event.receivedAtMs),
    /**
     * The merchant's order reference when sent, else the provider's order id. Not the key
     * hookhost serializes delivery on (the provider's order id first): two events with the same
     * orderKey but different order ids may run at the same time; kv stays consistent (a
     * conflicting attempt runs again).
     */
    orderKey: event.merchantRef ?? event.orderId,
    /** When it happened at the provider, else when hookhost received it. */
    at: Number(event.occurredAtMs ?? event.receivedAtMs),
    /** The provider's original body, parsed. */
    payloadJson: () => JSON.parse(event.payload),
  };
}

/**
 * Makes the `handler` export from a function `(event) => outcome`. A thrown value (an Error, a
 * string, a refused host call) becomes the attempt's error: hookhost records it and retries.
 * @param {(event: HookhostEvent) => Outcome | undefined} handle
 */
export function plugin(handle) {
  return {
    handle(event) {
      let outcome;
      try {
        outcome = handle(wrapEvent(event));
      } catch (e) {
        throw describe(e) + where(e);
      }
      return outcome ?? done();
    },
  };
}

/** The tenant's kv; writes commit only when the attempt succeeds. */
export const kv = {
  /** The raw bytes under `key`, or undefined. */
  get: (key) => call(`kv get ${key}`, () => rawKv.get(key)),
  /** The value under `key` as text, or undefined. */
  getText(key) {
    const v = kv.get(key);
    return v === undefined ? undefined : decoder.decode(v);
  },
  /** The value under `key` parsed as JSON, or undefined. */
  getJson(key) {
    const v = kv.getText(key);
    if (v === undefined) return undefined;
    try {
      return JSON.parse(v);
    } catch (e) {
      throw new Error(`kv value ${key} is not JSON: ${describe(e)}`);
    }
  },
  /** Stores a Uint8Array, a string, or any other value as JSON. */
  set: (key, value) => call(`kv set ${key}`, () => rawKv.set(key, bytes(value))),
  /** Stores `value` as JSON (a string is stored as a JSON string). */
  setJson: (key, value) => call(`kv set ${key}`, () => rawKv.set(key, encoder.encode(JSON.stringify(value)))),
  /** Stores `value` only if `key` is absent; true when it stored it (do-once). */
  setIfAbsent: (key, value = "1") => call(`kv set-if-absent ${key}`, () => rawKv.setIfAbsent(key, bytes(value))),
  /** Removes `key`; true when it existed. */
  delete: (key) => call(`kv delete ${key}`, () => rawKv.delete(key)),
  /** Keys starting with `prefix`, ascending, at most `limit`. */
  listKeys: (prefix, limit = 1000) => call(`kv list-keys ${prefix}`, () => rawKv.listKeys(prefix, limit)),
};

/** A response with text/JSON accessors. */
function wrapResponse(url, response) {
  return {
    ...response,
    text: () => decoder.decode(response.body),
    json: () => JSON.parse(decoder.decode(response.body)),
    /** Throws when the status is not 2xx, naming the URL and the status. */
    errorForStatus() {
      if (response.status < 200 || response.status >= 300) {
        const body = decoder.decode(response.body).slice(0, 200);
        throw new Error(`${url} answered ${response.status}${body ? `: ${body}` : ""}`);
      }
      return this;
    },
  };
}

/** Outbound HTTP to the tenant's allowed hosts. */
export const http = {
  /** Sends `{method, url, headers?, body?, timeoutMs?}`; method is lower case ("post"). */
  send(request) {
    const req = {
      method: (request.method ?? "get").toLowerCase(),
      url: request.url,
      headers: request.headers ?? [],
      body: request.body === undefined ? undefined : bytes(request.body),
      timeoutMs: request.timeoutMs,
    };
    return wrapResponse(request.url, call(`http ${req.method} ${request.url}`, () => rawHttp.send(req)));
  },
  /** POSTs `value` as JSON. */
  postJson(url, value, headers = []) {
    return http.send({
      method: "post",
      url,
      headers: [["content-type", "application/json"], ...headers],
      body: encoder.encode(JSON.stringify(value)),
    });
  },
};

/** The tenant's configuration values and secrets. */
export const config = {
  get: (key) => rawConfig.get(key),
  /** The value of `key`, or an error telling the operator to set it. */
  require(key) {
    const v = rawConfig.get(key);
    if (v === undefined) throw new Error(`config value ${key} is missing: set it in the tenant's config`);
    return v;
  },
  secret: (key) => rawConfig.getSecret(key),
  /** The secret `key`, or an error telling the operator to set it. */
  requireSecret(key) {
    const v = rawConfig.getSecret(key);
    if (v === undefined) throw new Error(`secret ${key} is missing: set it in the tenant's secrets`);
    return v;
  },
};

/** Log lines kept with the attempt. */
export const log = {
  trace: (message) => write("trace", String(message)),
  debug: (message) => write("debug", String(message)),
  info: (message) => write("info", String(message)),
  warn: (message) => write("warn", String(message)),
  error: (message) => write("error", String(message)),
};
