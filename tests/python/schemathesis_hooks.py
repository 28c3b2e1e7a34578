"""Schemathesis hooks for Payrail's schema tests (tests/api/openapi_tools.rs).

They stand in for what a correct client does and the document cannot say, and nothing else:
- every request with a valid `Idempotency-Key` gets a fresh one, as the API asks clients to use
  random keys (a key reused for another request is a 422 by design, not a schema mismatch);
- a gateway webhook whose `Payrail-Signature` was generated valid is signed for real with the
  webhook secret of the tenant the test runs as, and names that tenant as its account, so the
  fuzzer reaches the webhook's logic instead of its signature check;
- an invoice whose line items are schema-valid but would total more than an `i64` has its
  amounts scaled down (the document states each bound; it cannot state the product's);
- in `GET /api/invoices`, offset and cursor parameters are not mixed (documented as a 400);
- `DELETE /api/api-keys/{id}` never revokes the key the run is authenticated with (it would
  turn every later request into a 401): a spare key made for the purpose is revoked instead;
- a webhook endpoint's URL generated valid (any string, as far as the document can say) is,
  three times in four, the URL of the receiver the test runs, which the server is configured
  to accept: endpoints get created, and the operations on one reach it. The fourth keeps the
  generated string, which the server refuses unless it happens to be a URL it may call.
A value generated invalid is never touched, so negative tests still test the server.

Environment: PAYRAIL_ST_TENANT (tenant id), PAYRAIL_ST_WEBHOOK_SECRET (its webhook secret),
PAYRAIL_ST_API_KEY (the tenant admin key the run uses), PAYRAIL_ST_RECEIVER_URL (the test's
webhook receiver).
"""

import hashlib
import hmac
import json
import os
import re
import time
import uuid
import zlib

import requests
import schemathesis
from schemathesis.core.parameters import ParameterLocation

IDEMPOTENCY_KEY = re.compile(r"^[!-~](?:[ -~]*[!-~])?\Z")
I64_MAX = 2**63 - 1
# A subtotal up to this leaves room for any tax rate (up to 100 %) without overflowing.
SUBTOTAL_MAX = I64_MAX // 2
TENANT = os.environ["PAYRAIL_ST_TENANT"]
SECRETS = {TENANT: os.environ["PAYRAIL_ST_WEBHOOK_SECRET"]}
API_KEY = os.environ["PAYRAIL_ST_API_KEY"]
# `prk_<keyId>_<secret>`, the key id being `key_<26 characters>`.
API_KEY_ID = API_KEY.removeprefix("prk_").rsplit("_", 1)[0]
RECEIVER_URL = os.environ["PAYRAIL_ST_RECEIVER_URL"]


def is_positive(case, location):
    """Whether `location` of the case was generated valid (as far as Schemathesis knows)."""
    meta = getattr(case, "_meta", None)
    if meta is None:
        return True
    component = meta.components.get(ParameterLocation(location))
    mode = component.mode if component is not None else meta.generation.mode
    return str(mode.value if hasattr(mode, "value") else mode) == "positive"


def header_name(headers, wanted):
    for name in headers or {}:
        if name.lower() == wanted.lower():
            return name
    return None


def fresh_idempotency_key(case):
    name = header_name(case.headers, "Idempotency-Key")
    if name is None:
        return
    value = case.headers[name]
    if isinstance(value, str) and len(value) <= 255 and IDEMPOTENCY_KEY.match(value):
        case.headers[name] = str(uuid.uuid4())


def whole(value):
    """An integer as JSON Schema reads one (`3` or `3.0`), or None."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    if isinstance(value, float) and not value.is_integer():
        return None
    return int(value)


def keep_totals_in_range(case):
    body = case.body
    if not isinstance(body, dict) or not isinstance(body.get("lineItems"), list):
        return
    items = body["lineItems"]
    if not items or not all(isinstance(item, dict) for item in items):
        return
    amounts = [(whole(item.get("quantity")), whole(item.get("unitAmount"))) for item in items]
    if any(q is None or u is None or q < 1 or u < 1 for q, u in amounts):
        return
    if sum(q * u for q, u in amounts) <= SUBTOTAL_MAX:
        return
    each = SUBTOTAL_MAX // len(items)
    for item, (quantity, unit_amount) in zip(items, amounts):
        quantity = min(quantity, 1_000)
        item["quantity"] = quantity
        item["unitAmount"] = max(1, min(unit_amount, each // quantity))


OFFSET = ("page", "pageSize")
CURSOR = ("limit", "startingAfter")


def one_paging_mode(case):
    query = case.query
    if isinstance(query, dict) and any(k in query for k in OFFSET) and any(k in query for k in CURSOR):
        for key in CURSOR:
            query.pop(key, None)


def sign_webhook(case, kwargs):
    name = header_name(case.headers, "Payrail-Signature")
    if name is None or not is_positive(case, "header"):
        return
    body = case.body
    if isinstance(body, dict) and is_positive(case, "body"):
        body["account"] = TENANT
        for event in body.get("events") or []:
            if isinstance(event, dict) and "account" in event:
                event["account"] = TENANT
    account = body.get("account") if isinstance(body, dict) else None
    if type(body).__name__ == "NotSet":
        raw = b""
    else:
        if isinstance(body, (bytes, bytearray)):
            raw = bytes(body)
        else:
            try:
                raw = json.dumps(body, allow_nan=False).encode()
            except (TypeError, ValueError):
                return
        # Send exactly the bytes that are signed.
        kwargs["data"] = raw
        kwargs["json"] = None
    secret = SECRETS.get(account) if isinstance(account, str) else None
    secret = secret or SECRETS[TENANT]
    timestamp = int(time.time())
    mac = hmac.new(secret.encode(), f"{timestamp}.".encode() + raw, hashlib.sha256)
    case.headers[name] = f"t={timestamp},v1={mac.hexdigest()}"


def spare_key(case):
    """The id of a new key of the tenant, made to be revoked."""
    response = requests.post(
        case.operation.schema.get_base_url().rstrip("/") + "/api/api-keys",
        json={"name": "spare, to be revoked", "role": "viewer"},
        headers={"Authorization": f"Bearer {API_KEY}"},
        timeout=10,
    )
    response.raise_for_status()
    return response.json()["id"]


def keep_own_key(case):
    parameters = case.path_parameters or {}
    if parameters.get("id") == API_KEY_ID:
        parameters["id"] = spare_key(case)


def reachable_url(case):
    """Three generated URLs in four become the receiver's, chosen by a hash of the generated
    body: a run depends on its seed alone, and the same URL (Hypothesis makes `""` often) is
    sent as generated in some bodies and replaced in others."""
    body = case.body
    if not isinstance(body, dict) or not isinstance(body.get("url"), str):
        return
    generated = json.dumps(body, sort_keys=True, default=repr).encode()
    if zlib.crc32(generated) % 4 != 0:
        body["url"] = RECEIVER_URL


@schemathesis.hook
def before_call(context, case, kwargs):
    operation = case.operation
    fresh_idempotency_key(case)
    if operation.method.upper() == "DELETE" and operation.path == "/api/api-keys/{id}":
        keep_own_key(case)
    if operation.method.upper() == "POST" and operation.path == "/api/webhooks/payments":
        sign_webhook(case, kwargs)
    if operation.path == "/api/invoices" and operation.method.upper() == "GET":
        if is_positive(case, "query"):
            one_paging_mode(case)
    if (operation.method.upper(), operation.path) in (
        ("POST", "/api/webhook-endpoints"),
        ("PATCH", "/api/webhook-endpoints/{id}"),
    ):
        if is_positive(case, "body"):
            reachable_url(case)
    if operation.path in ("/api/invoices", "/api/invoices/{id}") and operation.method.upper() in (
        "POST",
        "PATCH",
    ):
        if is_positive(case, "body"):
            keep_totals_in_range(case)


@schemathesis.hook
def after_call(context, case, response):
    """Follows a rotation of the test tenant's webhook secret, so later webhooks still verify."""
    operation = case.operation
    if operation.path != "/api/tenants/{id}/webhook-secret/rotate" or response.status_code != 200:
        return
    tenant = (case.path_parameters or {}).get("id")
    if tenant in SECRETS:
        SECRETS[tenant] = response.json()["webhookSecret"]
