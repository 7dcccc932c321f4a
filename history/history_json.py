"""Exported history JSON to the ``History`` protobuf, several times faster than ``json_format``.

``WorkflowHistory.from_json`` runs protobuf's pure-Python JSON parser, which
checks every field generically: about 5.4 ms for one outreach history, a
quarter of replaying it. Here each message type is compiled once into a table
of field converters; the JSON is turned into constructor arguments and the
message is built by protobuf's C constructor in one call.

Only the plain proto3 JSON that ``temporal workflow show --output json`` and
``WorkflowHistory.to_json`` write is taken on this path: any value it does not
recognise (a legacy enum spelling, a well-known type other than Timestamp or
Duration, a string-encoded float, a null inside a list) raises
:class:`NotFastPath`, and the caller falls back to the SDK's parser, which
gives the same result or its own error. Tests compare both parsers on every
golden history.
"""

from __future__ import annotations

import base64
import re
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from functools import cache
from typing import Any

from google.protobuf.descriptor import Descriptor, FieldDescriptor
from temporalio.api.history.v1 import History

__all__ = ["NotFastPath", "history_from_dict"]

Convert = Callable[[Any], Any]

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_SECOND = timedelta(seconds=1)
_MAX_DURATION_SECONDS = 315_576_000_000  # google.protobuf.Duration's range: about 10,000 years
_TIMESTAMP = re.compile(r"(\d{4})-(\d\d)-(\d\d)T(\d\d):(\d\d):(\d\d)(?:\.(\d{1,9}))?(Z|[+-]\d\d:\d\d)\Z")
_DURATION = re.compile(r"(-)?(\d+)(?:\.(\d{1,9}))?s\Z")
_INTEGER = re.compile(r"-?\d+\Z")
_INT_TYPES = {FieldDescriptor.TYPE_INT32, FieldDescriptor.TYPE_INT64, FieldDescriptor.TYPE_UINT32,
              FieldDescriptor.TYPE_UINT64, FieldDescriptor.TYPE_SINT32, FieldDescriptor.TYPE_SINT64,
              FieldDescriptor.TYPE_FIXED32, FieldDescriptor.TYPE_FIXED64, FieldDescriptor.TYPE_SFIXED32,
              FieldDescriptor.TYPE_SFIXED64}


class NotFastPath(Exception):
    """The JSON holds something only the SDK's general parser handles."""


def history_from_dict(raw: Any) -> History:  # noqa: ANN401 - parsed JSON
    """The ``History`` for parsed exported JSON; NotFastPath when the SDK's parser must decide."""
    if not isinstance(raw, dict):
        raise NotFastPath("not an object")
    try:
        return History(**_message(History.DESCRIPTOR)(raw))
    except NotFastPath:
        raise
    except (TypeError, ValueError, AttributeError, KeyError, OverflowError) as err:
        raise NotFastPath(str(err)) from None


def _timestamp(value: Any) -> dict[str, int]:  # noqa: ANN401
    found = _TIMESTAMP.match(value) if isinstance(value, str) else None
    if found is None:
        raise NotFastPath(f"timestamp {value!r}")
    year, month, day, hour, minute, second, fraction, zone = found.groups()
    # datetime checks the ranges (hour 25, minute 61, second 60 and 31 February are refused, as by the SDK).
    when = datetime(int(year), int(month), int(day), int(hour), int(minute), int(second), tzinfo=UTC)
    seconds = (when - _EPOCH) // _SECOND
    if zone != "Z":
        hours, minutes = int(zone[1:3]), int(zone[4:6])
        if hours > 23 or minutes > 59:
            raise NotFastPath(f"timestamp offset {zone!r}")
        offset = hours * 3600 + minutes * 60
        seconds -= offset if zone[0] == "+" else -offset
    return {"seconds": seconds, "nanos": int(fraction.ljust(9, "0")) if fraction else 0}


def _duration(value: Any) -> dict[str, int]:  # noqa: ANN401
    found = _DURATION.match(value) if isinstance(value, str) else None
    if found is None:
        raise NotFastPath(f"duration {value!r}")
    sign, whole, fraction = found.groups()
    seconds, nanos = int(whole), int(fraction.ljust(9, "0")) if fraction else 0
    if seconds > _MAX_DURATION_SECONDS:
        raise NotFastPath(f"duration {value!r} out of range")
    return {"seconds": -seconds, "nanos": -nanos} if sign else {"seconds": seconds, "nanos": nanos}


def _integer(value: Any) -> int:  # noqa: ANN401
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    if isinstance(value, str) and _INTEGER.match(value):
        return int(value)
    raise NotFastPath(f"integer {value!r}")


def _float(value: Any) -> float:  # noqa: ANN401
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return float(value)
    raise NotFastPath(f"number {value!r}")


def _string(value: Any) -> str:  # noqa: ANN401
    if isinstance(value, str):
        return value
    raise NotFastPath(f"string {value!r}")


def _bool(value: Any) -> bool:  # noqa: ANN401
    if isinstance(value, bool):
        return value
    raise NotFastPath(f"bool {value!r}")


def _bytes(value: Any) -> bytes:  # noqa: ANN401
    if not isinstance(value, str):
        raise NotFastPath(f"bytes {value!r}")
    encoded = value.encode()
    # As json_format: standard or URL-safe alphabet, padding optional.
    return base64.urlsafe_b64decode(encoded + b"=" * (4 - len(encoded) % 4))


def _enum(field: FieldDescriptor) -> Convert:
    names = frozenset(field.enum_type.values_by_name)

    def convert(value: Any) -> Any:  # noqa: ANN401
        if isinstance(value, str) and value in names:
            return value
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        raise NotFastPath(f"enum {field.enum_type.full_name} value {value!r}")
    return convert


def _scalar(field: FieldDescriptor) -> Convert:
    kind = field.type
    if kind == FieldDescriptor.TYPE_MESSAGE:
        return _message(field.message_type)
    if kind == FieldDescriptor.TYPE_ENUM:
        return _enum(field)
    if kind in _INT_TYPES:
        return _integer
    if kind in (FieldDescriptor.TYPE_DOUBLE, FieldDescriptor.TYPE_FLOAT):
        return _float
    if kind == FieldDescriptor.TYPE_BOOL:
        return _bool
    if kind == FieldDescriptor.TYPE_BYTES:
        return _bytes
    return _string


def _field(field: FieldDescriptor) -> Convert:
    if field.message_type is not None and field.message_type.GetOptions().map_entry:
        key_field, value_field = field.message_type.fields_by_name["key"], field.message_type.fields_by_name["value"]
        key = _integer if key_field.type in _INT_TYPES else _string if key_field.type == FieldDescriptor.TYPE_STRING \
            else _unsupported(f"map key type {key_field.type}")
        value = _scalar(value_field)  # every converter refuses None, so a null in a map or list steps aside

        def convert_map(raw: Any) -> dict:  # noqa: ANN401
            if not isinstance(raw, dict):
                raise NotFastPath(f"map {field.full_name}")
            return {key(k): value(v) for k, v in raw.items()}
        return convert_map
    item = _scalar(field)
    if _repeated(field):
        def convert_list(raw: Any) -> list:  # noqa: ANN401
            if not isinstance(raw, list):
                raise NotFastPath(f"list {field.full_name}")
            return [item(v) for v in raw]
        return convert_list
    return item


def _repeated(field: FieldDescriptor) -> bool:
    repeated = getattr(field, "is_repeated", None)  # protobuf >= 6; older ones have only ``label``
    return repeated if repeated is not None else field.label == FieldDescriptor.LABEL_REPEATED


def _unsupported(what: str) -> Convert:
    def convert(value: Any) -> Any:  # noqa: ANN401
        raise NotFastPath(what)
    return convert


@cache
def _message(descriptor: Descriptor) -> Convert:
    """A converter from a JSON object to constructor arguments for ``descriptor``, compiled once."""
    if descriptor.full_name == "google.protobuf.Timestamp":
        return _timestamp
    if descriptor.full_name == "google.protobuf.Duration":
        return _duration
    if descriptor.full_name.startswith("google.protobuf."):
        return _unsupported(f"well-known type {descriptor.full_name}")
    table: dict[str, tuple[str, Convert, str | None]] = {}

    def convert(raw: Any) -> dict[str, Any]:  # noqa: ANN401
        if not isinstance(raw, dict):
            raise NotFastPath(f"{descriptor.full_name} is not an object")
        if not table:
            _fill(table, descriptor)
        out: dict[str, Any] = {}
        oneofs: set[str] = set()
        for key, value in raw.items():
            entry = table.get(key)
            if entry is None or value is None:  # unknown fields are ignored, as by the SDK; null is unset
                continue
            name, field_convert, oneof = entry
            if name in out or oneof in oneofs:
                raise NotFastPath(f"{descriptor.full_name}.{name} set twice")
            if oneof is not None:
                oneofs.add(oneof)
            out[name] = field_convert(value)
        return out
    return convert


def _fill(table: dict[str, tuple[str, Convert, str | None]], descriptor: Descriptor) -> None:
    """Field converters, built on first use (message types refer to each other recursively)."""
    entries = {}
    for field in descriptor.fields:
        oneof = field.containing_oneof
        entry = (field.name, _field(field), oneof.name if oneof is not None else None)
        entries[field.json_name] = entry
        entries[field.name] = entry
    table.update(entries)
