"""Every error conveyor raises, in one tree.

```
ConveyorError
├── ConfigurationError            bad URL, option or argument (also a ValueError)
│   ├── UnknownSchemeError        no backend registered for the URL scheme
│   └── BackendNotInstalledError  a known scheme whose package is not installed
├── BackendError                  the broker said no, or could not be reached
│   ├── BrokerUnavailableError    connection refused / lost after retries
│   ├── GroupNotFoundError        the consumer group (or its stream) is gone
│   ├── WrongTypeError            the key/stream exists but is not a stream
│   └── ConfigConflictError       an existing broker object differs from what was asked
├── PayloadError                  a payload conveyor cannot carry
│   ├── UnserializablePayloadError  publish of a value that does not survive JSON
│   ├── InvalidHeaderError        a header name or value no broker can carry (ValueError)
│   ├── PayloadTooLargeError      a message larger than the broker accepts
│   ├── DecodeError               a stored entry that cannot be decoded
│   └── PayloadValidationError    a payload that does not fit a typed handler's type
├── BackendClosedError            an operation on a closed backend
└── AppLoadError                  `module:app` could not be imported / is not an App
```

Backends translate their client's exceptions into this tree in exactly one place each;
the engine only ever catches these classes.
"""

from __future__ import annotations

__all__ = [
    "AppLoadError",
    "BackendClosedError",
    "BackendError",
    "BackendNotInstalledError",
    "BrokerUnavailableError",
    "ConfigConflictError",
    "ConfigurationError",
    "ConveyorError",
    "DecodeError",
    "GroupNotFoundError",
    "InvalidHeaderError",
    "PayloadError",
    "PayloadTooLargeError",
    "PayloadValidationError",
    "UnknownSchemeError",
    "UnserializablePayloadError",
    "WrongTypeError",
]


class ConveyorError(Exception):
    """Base class of every error raised by conveyor and its backends."""


class ConfigurationError(ConveyorError, ValueError):
    """Raised for an invalid URL, query option or constructor argument."""


class UnknownSchemeError(ConfigurationError):
    """Raised by `connect()` when no installed backend handles the URL scheme.

    The message names the installed schemes.
    """


class BackendNotInstalledError(ConfigurationError):
    """Raised by `connect()` for a known scheme whose distribution is not installed.

    The message names the package to install.
    """


class BackendError(ConveyorError):
    """Raised when the broker refuses an operation or cannot be reached."""


class BrokerUnavailableError(BackendError):
    """Raised when the broker cannot be reached (refused, timed out, connection lost).

    `StreamProcessor.start()` raises it once its bounded connection retries are spent.
    """


class GroupNotFoundError(BackendError):
    """Raised when the consumer group, or the stream holding it, no longer exists.

    The engine reacts by recreating the group and logging it.
    """


class WrongTypeError(BackendError):
    """Raised when the stream's key exists on the broker but holds something else."""


class ConfigConflictError(BackendError):
    """Raised when a broker object exists with a configuration that differs from the request.

    The message says what differs and how to fix it.
    """


class PayloadError(ConveyorError):
    """Base class for payloads that conveyor cannot carry."""


class UnserializablePayloadError(PayloadError, TypeError):
    """Raised by `publish()` for a payload that would not survive a JSON round trip.

    The message names the offending key path.
    """


class InvalidHeaderError(PayloadError, ValueError):
    """Raised by `publish()` for a header that is not a str → str pair every backend can
    carry, or whose name is reserved (``conveyor-*``, ``nats-*``). The message names it."""


class PayloadTooLargeError(PayloadError):
    """Raised by `publish()` before anything is sent when an encoded message (payload and
    headers) is larger than the broker accepts; the message names both sizes. The
    connection stays usable."""


class DecodeError(PayloadError):
    """Raised when a stored entry cannot be decoded into a payload dict."""


class PayloadValidationError(PayloadError, ValueError):
    """Raised when a payload does not validate against the type of a typed handler's
    first parameter (see `conveyor.typed`); the message lists the errors, one per field.

    The engine dead-letters such a message at once, without retries (a handler may raise
    it too, for the same effect). `errors` holds the validator's own error records.
    """

    def __init__(self, message: str, errors: list[dict[str, object]] | None = None) -> None:
        super().__init__(message)
        self.errors = errors or []


class BackendClosedError(ConveyorError):
    """Raised by an operation on a backend after `aclose()`."""


class AppLoadError(ConveyorError):
    """Raised by the CLI when `module:app` cannot be imported or is not an `App`."""
