"""hookhost's guest helpers for Python plugins: the same conveniences as the Rust SDK
(hookhost-guest) over the raw `hookhost:plugin@0.1.0` bindings that componentize-py generates from
the WIT (`wit_world`). Nothing here is required: a plugin may use the raw bindings directly.

    from hookhost import Event, plugin, kv, http, config, log, done, skipped

    def handle(event: Event):
        ...
        return done()

    Handler = plugin(handle)

What it adds: an `Event` with statuses and kinds as plain strings ("succeeded", "payment"),
`order_key`, `at` and `payload_json()`; kv values as JSON or text; `http.post_json` with
`error_for_status()`; `config.require`; `log.info(...)`; and any exception raised by the handler
(including a refused kv or http call) becomes the attempt's error message, with the file, line
and function it was raised in, so hookhost records why and where, and retries.
"""
import json
import os
import re
import traceback
from typing import Any, Callable, Optional

from componentize_py_types import Err
from wit_world import exports
from wit_world.imports import config as _config
from wit_world.imports import http as _http
from wit_world.imports import kv as _kv
from wit_world.imports import log as _log
from wit_world.imports import types

Outcome = types.Outcome


def done() -> Outcome:
    """The event was handled: kv writes commit."""
    return types.Outcome_Done()


def skipped(reason: str) -> Outcome:
    """Deliberately not handled, with why: kv writes commit."""
    return types.Outcome_Skipped(str(reason))


def retry_after(seconds: int) -> Outcome:
    """Call again in `seconds`: this attempt's kv writes are discarded."""
    return types.Outcome_RetryAfter(max(0, int(seconds)))


def _name(enum_value: Any) -> str:
    return enum_value.name.lower().replace("_", "-")


def _describe(error: BaseException) -> str:
    """A readable message; a refused host call says which variant (`denied: host x`)."""
    if isinstance(error, Err):
        value = error.value
        if isinstance(value, str):
            return value
        kind = type(value).__name__.split("_", 1)[-1]
        kind = "".join("-" + c.lower() if c.isupper() else c for c in kind).lstrip("-")
        inner = getattr(value, "value", None)
        return kind if inner is None else f"{kind}: {inner}"
    return str(error) or type(error).__name__


class HostCallError(Exception):
    """A host capability refused a call; the message says which call and why."""


def _call(what: str, fn: Callable[[], Any]) -> Any:
    try:
        return fn()
    except Err as e:
        raise HostCallError(f"{what}: {_describe(e)}") from None


class Event:
    """One normalized webhook. `status` and `kind` are plain strings as in the WIT
    ("succeeded", "order-status-changed"); every other field is the WIT record's, snake_case."""

    def __init__(self, raw: types.Event):
        self.raw = raw
        self.id: str = raw.id
        self.tenant: str = raw.tenant
        self.source: str = raw.source
        self.provider: str = raw.provider
        self.kind: str = _name(raw.kind)
        self.status: str = _name(raw.status)
        self.order_id: Optional[str] = raw.order_id
        self.merchant_ref: Optional[str] = raw.merchant_ref
        self.raw_status: Optional[str] = raw.raw_status
        self.raw_sub_status: Optional[str] = raw.raw_sub_status
        self.reason: Optional[str] = raw.reason
        self.amount: Optional[str] = raw.amount.amount if raw.amount else None
        self.currency: Optional[str] = raw.amount.currency if raw.amount else None
        self.occurred_at_ms: Optional[int] = raw.occurred_at_ms
        self.received_at_ms: int = raw.received_at_ms
        self.attempt: int = raw.attempt
        self.payload: str = raw.payload

    @property
    def order_key(self) -> Optional[str]:
        """The merchant's order reference when sent, else the provider's order id.

        Not the key hookhost serializes delivery on (the provider's order id first): two events
        with the same order_key but different order ids may run at the same time; kv stays
        consistent (a conflicting attempt runs again)."""
        return self.merchant_ref if self.merchant_ref is not None else self.order_id

    @property
    def at(self) -> int:
        """When it happened at the provider, else when hookhost received it (ms)."""
        return self.occurred_at_ms if self.occurred_at_ms is not None else self.received_at_ms

    def payload_json(self) -> Any:
        """The provider's original body, parsed."""
        return json.loads(self.payload)


def plugin(handle: Callable[[Event], Optional[Outcome]]) -> type:
    """Makes the `Handler` class componentize-py exports from a function `handle(event)`.
    Returning None means done; an exception becomes the attempt's error (recorded, retried)."""

    class Handler(exports.Handler):
        def handle(self, event: types.Event) -> Outcome:
            try:
                outcome = handle(Event(event))
            except Err:
                raise
            except Exception as e:  # the plugin's own failure: its message and where it was raised
                raise Err(_describe(e) + _where(e)) from None
            return done() if outcome is None else outcome

    return Handler


def _where(error: BaseException) -> str:
    """The plugin's own frames of the traceback (this helper's left out), innermost last, at most 5
    lines `  File "logic.py", line 12, in order_record`; the project's files named as the merchant
    knows them (componentize-py mounts the project at `/0`)."""
    frames = [
        f
        for f in traceback.extract_tb(error.__traceback__)
        if os.path.basename(f.filename) != "hookhost.py"
    ][-5:]
    lines = [
        f'  File "{re.sub(r"^/[0-9]+/", "", f.filename)}", line {f.lineno}, in {f.name}'
        for f in frames
    ]
    return "\n" + "\n".join(lines) if lines else ""


def _bytes(value: Any) -> bytes:
    if isinstance(value, (bytes, bytearray)):
        return bytes(value)
    if isinstance(value, str):
        return value.encode()
    return json.dumps(value).encode()


class kv:
    """The tenant's kv; writes commit only when the attempt succeeds."""

    @staticmethod
    def get(key: str) -> Optional[bytes]:
        return _call(f"kv get {key}", lambda: _kv.get(key))

    @staticmethod
    def get_text(key: str) -> Optional[str]:
        value = kv.get(key)
        return None if value is None else value.decode()

    @staticmethod
    def get_json(key: str) -> Any:
        """The value under `key` parsed as JSON, or None."""
        value = kv.get(key)
        if value is None:
            return None
        try:
            return json.loads(value)
        except ValueError as e:
            raise ValueError(f"kv value {key} is not JSON: {e}") from None

    @staticmethod
    def set(key: str, value: Any) -> None:
        """Stores bytes, text, or any other value as JSON."""
        _call(f"kv set {key}", lambda: _kv.set(key, _bytes(value)))

    @staticmethod
    def set_json(key: str, value: Any) -> None:
        _call(f"kv set {key}", lambda: _kv.set(key, json.dumps(value).encode()))

    @staticmethod
    def set_if_absent(key: str, value: Any = b"1") -> bool:
        """Stores `value` only if `key` is absent; True when it stored it (do-once)."""
        return _call(f"kv set-if-absent {key}", lambda: _kv.set_if_absent(key, _bytes(value)))

    @staticmethod
    def delete(key: str) -> bool:
        return _call(f"kv delete {key}", lambda: _kv.delete(key))

    @staticmethod
    def list_keys(prefix: str, limit: int = 1000) -> list:
        return _call(f"kv list-keys {prefix}", lambda: _kv.list_keys(prefix, limit))


class Response:
    """An outbound response with text/JSON accessors."""

    def __init__(self, url: str, raw: _http.Response):
        self.url = url
        self.status: int = raw.status
        self.headers = raw.headers
        self.body: bytes = raw.body

    def text(self) -> str:
        return self.body.decode(errors="replace")

    def json(self) -> Any:
        return json.loads(self.body)

    def error_for_status(self) -> "Response":
        """Raises when the status is not 2xx, naming the URL and the status."""
        if not 200 <= self.status < 300:
            body = self.text()[:200]
            raise RuntimeError(f"{self.url} answered {self.status}" + (f": {body}" if body else ""))
        return self


_METHODS = {m.name.lower(): m for m in _http.Method}


class http:
    """Outbound HTTP to the tenant's allowed hosts."""

    @staticmethod
    def send(method: str, url: str, headers=(), body: Any = None, timeout_ms: Optional[int] = None) -> Response:
        request = _http.Request(
            method=_METHODS[method.lower()],
            url=url,
            headers=list(headers),
            body=None if body is None else _bytes(body),
            timeout_ms=timeout_ms,
        )
        return Response(url, _call(f"http {method.lower()} {url}", lambda: _http.send(request)))

    @staticmethod
    def post_json(url: str, value: Any, headers=()) -> Response:
        """POSTs `value` as JSON."""
        return http.send("post", url, [("content-type", "application/json"), *headers], json.dumps(value))


class config:
    """The tenant's configuration values and secrets."""

    @staticmethod
    def get(key: str) -> Optional[str]:
        return _config.get(key)

    @staticmethod
    def require(key: str) -> str:
        """The value of `key`, or an error telling the operator to set it."""
        value = _config.get(key)
        if value is None:
            raise LookupError(f"config value {key} is missing: set it in the tenant's config")
        return value

    @staticmethod
    def secret(key: str) -> Optional[str]:
        return _config.get_secret(key)

    @staticmethod
    def require_secret(key: str) -> str:
        value = _config.get_secret(key)
        if value is None:
            raise LookupError(f"secret {key} is missing: set it in the tenant's secrets")
        return value


class log:
    """Log lines kept with the attempt."""

    @staticmethod
    def trace(message: Any) -> None:
        _log.write(_log.Level.TRACE, str(message))

    @staticmethod
    def debug(message: Any) -> None:
        _log.write(_log.Level.DEBUG, str(message))

    @staticmethod
    def info(message: Any) -> None:
        _log.write(_log.Level.INFO, str(message))

    @staticmethod
    def warn(message: Any) -> None:
        _log.write(_log.Level.WARN, str(message))

    @staticmethod
    def error(message: Any) -> None:
        _log.write(_log.Level.ERROR, str(message))
