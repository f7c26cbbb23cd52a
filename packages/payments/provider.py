"""An async client of the payment provider (``apps/payment_provider_sim`` or a PSP with its API).

Every charge and refund carries an idempotency key: the provider answers a request it has
seen before with the first answer and charges nothing new, which is what makes a retry safe.

Errors, by what the caller should do:

- ``PaymentDeclined``: a final answer (the card was declined). Do not retry; the order fails.
- ``ProviderUnavailable``: retry later **with the same key**. The provider was down (503 and
  other 5xx, 408, 429), did not answer in time, dropped the connection or answered something
  unreadable. It may be ambiguous: the charge or refund may have happened and only the reply
  was lost. Retrying with the same key returns that charge instead of making a second one;
  a new key would charge twice.
- ``IdempotencyConflict``: the key was used before for a different request. A bug in how keys
  are made; retrying cannot help.
- ``InvalidRequest``: the provider refused the request itself (400, 401, 404 unknown charge,
  413, 415, 422 such as a refund larger than what is left). Retrying cannot help.

``ProviderError.retryable`` says which is which, e.g. for a Temporal activity's
non-retryable errors.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, ClassVar, Literal, TypeVar

import aiohttp
import msgspec

IDEMPOTENCY_HEADER = "Idempotency-Key"
REPLAYED_HEADER = "Idempotent-Replayed"
DEFAULT_TIMEOUT_S = 30.0

T = TypeVar("T")


class Capture(msgspec.Struct, frozen=True, kw_only=True):
    charge_id: str
    order_id: str
    amount: int
    currency: str
    idempotency_key: str
    created_at: datetime
    # True when the provider answered from an earlier request with this key.
    replayed: bool = False


class Refund(msgspec.Struct, frozen=True, kw_only=True):
    refund_id: str
    charge_id: str
    order_id: str
    amount: int
    currency: str
    idempotency_key: str
    created_at: datetime
    replayed: bool = False


class ChargeRecord(msgspec.Struct, frozen=True, kw_only=True):
    """A capture or refund the provider holds for an order (declines are not listed)."""

    kind: Literal["capture", "refund"]
    amount: int
    idempotency_key: str
    at: datetime


class _Charges(msgspec.Struct, frozen=True):
    charges: list[ChargeRecord]


class _Error(msgspec.Struct, frozen=True):
    error: str = "unknown"
    detail: Any = None


class ProviderError(Exception):
    """The provider did not carry out the request as asked; ``str()`` is its explanation."""

    retryable: ClassVar[bool] = False

    def __init__(self, message: str, *, status: int | None = None, code: str = "") -> None:
        super().__init__(message)
        self.status = status
        self.code = code


class PaymentDeclined(ProviderError):
    """The payment method was declined: a final answer."""


class ProviderUnavailable(ProviderError):
    """Down, too slow, or the reply was lost: retry with the same idempotency key.

    Possibly ambiguous: the charge or refund may have been made. The same key gets it back.
    """

    retryable = True


class IdempotencyConflict(ProviderError):
    """The idempotency key was used before for a different request."""


class InvalidRequest(ProviderError):
    """The provider refused the request itself (``status`` and ``code`` say why)."""


_capture_decoder = msgspec.json.Decoder(Capture)
_refund_decoder = msgspec.json.Decoder(Refund)
_charges_decoder = msgspec.json.Decoder(_Charges)
_error_decoder = msgspec.json.Decoder(_Error)
_encoder = msgspec.json.Encoder()

# Statuses that say "not now" rather than "never": retrying later may succeed.
_TRANSIENT = frozenset({408, 425, 429})


class PaymentProvider:
    """A client on an ``aiohttp.ClientSession`` the caller owns (and closes).

    ``api_key``: the provider's secret, sent as a bearer token (the simulator wants one only
    when started with ``ORDERLY_SIM_API_KEY``). ``timeout_s`` bounds each request; a request
    cut off by it raises ``ProviderUnavailable``.
    """

    def __init__(
        self,
        base_url: str,
        session: aiohttp.ClientSession,
        *,
        api_key: str | None = None,
        timeout_s: float = DEFAULT_TIMEOUT_S,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self._session = session
        self._headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        self._timeout = aiohttp.ClientTimeout(total=timeout_s)

    async def capture(
        self,
        *,
        order_id: str,
        amount: int,
        currency: str,
        payment_token: str,
        idempotency_key: str,
    ) -> Capture:
        """Charge ``amount``; raises ``PaymentDeclined`` for a decline (see module doc)."""
        body = {
            "order_id": order_id,
            "amount": amount,
            "currency": currency,
            "payment_token": payment_token,
            "idempotency_key": idempotency_key,
        }
        raw, replayed = await self._post("/charges", body)
        capture = _decode(_capture_decoder, raw)
        return msgspec.structs.replace(capture, replayed=replayed)

    async def refund(
        self,
        *,
        order_id: str,
        charge_id: str,
        amount: int,
        currency: str,
        idempotency_key: str,
    ) -> Refund:
        """Give back ``amount`` of a charge; at most what is left of it."""
        body = {
            "order_id": order_id,
            "charge_id": charge_id,
            "amount": amount,
            "currency": currency,
            "idempotency_key": idempotency_key,
        }
        raw, replayed = await self._post("/refunds", body)
        refund = _decode(_refund_decoder, raw)
        return msgspec.structs.replace(refund, replayed=replayed)

    async def charges(self, order_id: str) -> list[ChargeRecord]:
        """The captures and refunds the provider holds for ``order_id``, oldest first."""
        try:
            async with self._session.get(
                f"{self.base_url}/charges",
                params={"order_id": order_id},
                headers=self._headers,
                timeout=self._timeout,
                allow_redirects=False,
            ) as response:
                raw = await response.read()
                if response.status != 200:
                    raise _error(response.status, raw)
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise _unreachable(exc) from exc
        return _decode(_charges_decoder, raw).charges

    async def _post(self, path: str, body: dict[str, object]) -> tuple[bytes, bool]:
        """The 2xx reply's body and whether it was replayed; raises ``ProviderError``."""
        try:
            async with self._session.post(
                f"{self.base_url}{path}",
                data=_encoder.encode(body),
                headers={**self._headers, "Content-Type": "application/json"},
                timeout=self._timeout,
                allow_redirects=False,
            ) as response:
                raw = await response.read()
                if not 200 <= response.status < 300:
                    raise _error(response.status, raw)
                return raw, response.headers.get(REPLAYED_HEADER) == "true"
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise _unreachable(exc) from exc


def _decode(decoder: msgspec.json.Decoder[T], raw: bytes) -> T:
    try:
        return decoder.decode(raw)
    except (msgspec.DecodeError, msgspec.ValidationError) as exc:
        # A success we cannot read may still be a charge made: retry under the same key.
        raise ProviderUnavailable(f"unreadable answer from the provider: {exc}") from exc


def _unreachable(exc: BaseException) -> ProviderUnavailable:
    what = "did not answer in time" if isinstance(exc, TimeoutError) else "could not be reached"
    return ProviderUnavailable(
        f"the provider {what} ({type(exc).__name__}: {exc}); the request may have been carried"
        " out: retry with the same idempotency key"
    )


def _error(status: int, raw: bytes) -> ProviderError:
    try:
        error = _error_decoder.decode(raw)
    except (msgspec.DecodeError, msgspec.ValidationError):
        error = _Error(error="unreadable", detail=raw[:200].decode(errors="replace"))
    message = error.detail if isinstance(error.detail, str) else f"{error.error}: {error.detail}"
    if status == 402:
        return PaymentDeclined(message, status=status, code=error.error)
    if status == 409:
        return IdempotencyConflict(message, status=status, code=error.error)
    if status >= 500 or status in _TRANSIENT:
        return ProviderUnavailable(
            f"the provider answered {status} ({message}); retry with the same idempotency key",
            status=status,
            code=error.error,
        )
    if 400 <= status < 500:
        return InvalidRequest(message, status=status, code=error.error)
    return ProviderUnavailable(f"unexpected answer {status} from the provider", status=status)
