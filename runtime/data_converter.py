"""careloom's data converter.

Client, worker, CLI and replayer all use :func:`data_converter` (the shared pydantic converter, encrypted when
payload keys are set or, without them, with the development key of the embedded stack), so typed pydantic
models survive every hop. It reaches them through :class:`runtime.plugin.CareloomPlugin`, which
:func:`runtime.temporal_client.connect` gives the client (and the SDK passes on to every worker built from it).
"""

from __future__ import annotations

import dataclasses

from temporalio.contrib.pydantic import PydanticPayloadConverter
from temporalio.converter import (
    DataConverter,
    DefaultFailureConverterWithEncodedAttributes,
    PayloadCodec,
    SerializationContext,
)

from runtime.codec import DEVELOPMENT_KEY_FILE, PayloadEncryptionCodec, parse_keys
from runtime.settings import Settings

__all__ = ["DATA_CONVERTER", "SharedPydanticPayloadConverter", "codec_for", "data_converter",
           "data_converter_with_codec", "payloads_encrypted"]


class SharedPydanticPayloadConverter(PydanticPayloadConverter):
    """The pydantic payload converter, built once per process.

    The SDK clones the data converter for every workflow activation (to attach
    the serialization context), and a clone constructs a fresh payload
    converter: a new pydantic ``SchemaSerializer`` and an empty type-adapter
    cache, thrown away when the activation ends. This class hands every clone
    the same instance, so type adapters are built once per process. It holds
    no per-workflow state: the converters it wraps take no serialization
    context, and if one ever did, :meth:`with_context` returns a private copy.
    """

    _shared: SharedPydanticPayloadConverter | None = None

    def __new__(cls) -> SharedPydanticPayloadConverter:  # noqa: D102
        if cls._shared is None:
            shared = super().__new__(cls)
            PydanticPayloadConverter.__init__(shared)
            cls._shared = shared
        return cls._shared

    def __init__(self) -> None:  # built once, in __new__
        pass

    def with_context(self, context: SerializationContext) -> PydanticPayloadConverter:
        converters = self.get_converters_with_context(context)
        if converters is None:
            return self
        private = PydanticPayloadConverter()
        private._set_converters(*converters)
        return private


DATA_CONVERTER = DataConverter(payload_converter_class=SharedPydanticPayloadConverter)
"""The converter without encryption (development default, tests)."""


def codec_for(settings: Settings) -> PayloadEncryptionCodec | None:
    """The payload encryption codec: the configured keys; without them, for the embedded development stack, the
    development key in ``<state_dir>/payload-keys`` (made on first use); None otherwise.

    None only in development against a Temporal named by TEMPORAL_ADDRESS without CARELOOM_PAYLOAD_KEYS:
    processes on other hosts cannot share a key file, so such a setup must configure keys to encrypt
    (production refuses to start without them).
    """
    if settings.payload_keys is not None:
        keys, active = parse_keys(settings.payload_keys.get_secret_value())
        return PayloadEncryptionCodec(keys, active)
    if payloads_encrypted(settings):
        return PayloadEncryptionCodec.from_key_file(settings.state_dir / DEVELOPMENT_KEY_FILE)
    return None


def payloads_encrypted(settings: Settings) -> bool:
    """Whether the processes these settings configure encrypt payloads (keys set, or the embedded stack)."""
    return settings.payload_keys is not None or (settings.environment == "development" and settings.embedded)


def data_converter(settings: Settings) -> DataConverter:
    """The pydantic converter, wrapped with the AES-256-GCM codec when payloads are encrypted (:func:`codec_for`).

    With a codec, failure messages and stack traces are moved into an encoded (so encrypted) payload
    too: an error message may quote a value, and failures are stored in history like any payload.
    """
    codec = codec_for(settings)
    if codec is None:
        return DATA_CONVERTER
    return data_converter_with_codec(codec)


def data_converter_with_codec(codec: PayloadCodec) -> DataConverter:
    """The shared pydantic converter with ``codec``, failure messages and stack traces encoded too."""
    return dataclasses.replace(DATA_CONVERTER, payload_codec=codec,
                               failure_converter_class=DefaultFailureConverterWithEncodedAttributes)
