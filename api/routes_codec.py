"""The Temporal Web UI's codec endpoint (``--ui-codec-endpoint``): payloads decrypted for signed-in users only."""

from __future__ import annotations

from fastapi import APIRouter, Depends, HTTPException, Request
from fastapi.responses import JSONResponse
from google.protobuf import json_format
from temporalio.api.common.v1 import Payloads

from api.deps import Codec, current_identity
from runtime.codec import PayloadEncryptionCodec, PayloadKeyError

__all__ = ["router"]

router = APIRouter(prefix="/codec", include_in_schema=False, dependencies=[Depends(current_identity)])


@router.post("/decode")
async def codec_decode(request: Request, codec: Codec) -> JSONResponse:
    """Temporal Web UI codec endpoint (`--ui-codec-endpoint`): decrypts payloads for signed-in users only."""
    return await _codec(request, codec, encode=False)


@router.post("/encode")
async def codec_encode(request: Request, codec: Codec) -> JSONResponse:
    return await _codec(request, codec, encode=True)


async def _codec(request: Request, codec: PayloadEncryptionCodec | None, *, encode: bool) -> JSONResponse:
    payloads = Payloads()
    try:
        json_format.Parse(await request.body(), payloads)
    except json_format.ParseError as err:
        raise HTTPException(status_code=422, detail=f"body must be {{'payloads': [...]}}: {err}") from None
    if codec is None:
        return JSONResponse(json_format.MessageToDict(payloads))
    try:
        out = await (codec.encode(payloads.payloads) if encode else codec.decode(payloads.payloads))
    except PayloadKeyError as err:
        raise HTTPException(status_code=422, detail=str(err)) from None
    return JSONResponse(json_format.MessageToDict(Payloads(payloads=out)))
