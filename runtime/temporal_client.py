"""Connecting to Temporal with careloom's data converter.

Client, worker, CLI and replayer all use :func:`data_converter` (the shared
pydantic converter, encrypted when payload keys are set or, without them, with
the development key of the embedded stack), so typed pydantic
models survive every hop. It reaches them through
:class:`runtime.plugin.CareloomPlugin`, which :func:`connect` gives the client
(and the SDK passes on to every worker built from it).
"""

from __future__ import annotations

import dataclasses

from temporalio.client import Client
from temporalio.contrib.pydantic import PydanticPayloadConverter
from temporalio.converter import (
    DataConverter,
    DefaultFailureConverterWithEncodedAttributes,
    PayloadCodec,
    SerializationContext,
)
from temporalio.runtime import Runtime
from temporalio.service import TLSConfig

from runtime.codec import DEVELOPMENT_KEY_FILE, PayloadEncryptionCodec, parse_keys
from runtime.errors import ConfigurationError
from runtime.settings import Settings

__all__ = ["DATA_CONVERTER", "SharedPydanticPayloadConverter", "codec_for", "connect", "data_converter",
           "data_converter_with_codec", "payloads_encrypted", "tls_config"]


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


def tls_config(settings: Settings) -> TLSConfig | bool:
    """TLS for a real cluster: mTLS when a client certificate is set, plain TLS with an API key."""
    if settings.temporal_tls_cert is not None and settings.temporal_tls_key is not None:
        ca = settings.temporal_tls_ca.read_bytes() if settings.temporal_tls_ca else None
        return TLSConfig(
            server_root_ca_cert=ca,
            client_cert=settings.temporal_tls_cert.read_bytes(),
            client_private_key=settings.temporal_tls_key.read_bytes(),
        )
    return settings.temporal_tls or settings.temporal_api_key is not None


async def connect(settings: Settings, *, target_host: str | None = None, runtime: Runtime | None = None) -> Client:
    """Connect to the configured cluster (or the embedded server's address).

    The client carries :class:`~runtime.plugin.CareloomPlugin`: its data converter, and for every worker
    built from this client the sandbox passthrough modules and workflow failure types.
    """
    from runtime.plugin import CareloomPlugin  # runtime.plugin imports this module

    host = target_host or settings.target_host
    try:
        return await Client.connect(
            host,
            namespace=settings.temporal_namespace,
            api_key=settings.temporal_api_key.get_secret_value() if settings.temporal_api_key else None,
            tls=tls_config(settings),
            plugins=[CareloomPlugin(settings)],
            **({"runtime": runtime} if runtime is not None else {}),
        )
    except RuntimeError as err:
        raise ConfigurationError(
            f"cannot reach Temporal at {host} (namespace {settings.temporal_namespace}): {err}. "
            "Start it with `careloom up`, or set TEMPORAL_ADDRESS to a running cluster"
        ) from err
