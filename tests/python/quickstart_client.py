"""The README's quick start, driven through a client generated from /api/openapi.json.

Usage: quickstart_client.py BASE_URL ADMIN_TOKEN (the generated package `payrail_client` on
PYTHONPATH). Everything goes through the generated code: no hand-written HTTP. Exits non-zero,
with the reason, on any step that does not go as the README says.
"""

import sys
import time
import uuid

from payrail_client import AuthenticatedClient
from payrail_client.api.invoices import create_invoice, get_invoice, invoice_timeline
from payrail_client.api.payments import create_payment, get_payment
from payrail_client.api.tenants import create_tenant
from payrail_client.models import (
    CardInput,
    CreateInvoice,
    CreatePayment,
    CreateTenant,
    Event,
    Invoice,
    InvoiceStatus,
    LineItemInput,
    Payment,
    PaymentMethodType,
    PaymentStatus,
    TenantCreated,
)

WEBHOOK_WAIT_SECS = 20


def expect(value, kind, step):
    if not isinstance(value, kind):
        sys.exit(f"{step}: expected {kind.__name__}, got {value!r}")
    return value


def main(base_url, admin_token):
    admin = AuthenticatedClient(base_url=base_url, token=admin_token, raise_on_unexpected_status=True)
    # A tenant: its admin API key and webhook secret are shown once.
    tenant = expect(
        create_tenant.sync(client=admin, body=CreateTenant(name="Acme"), idempotency_key=str(uuid.uuid4())),
        TenantCreated,
        "create tenant",
    )
    assert tenant.webhook_secret.startswith("whsec_"), tenant
    client = AuthenticatedClient(base_url=base_url, token=tenant.api_key.key, raise_on_unexpected_status=True)

    # An open invoice: 3 seats at 10.00 USD plus 10 % tax = 33.00.
    invoice = expect(
        create_invoice.sync(
            client=client,
            body=CreateInvoice(
                customer_name="Jane Doe",
                currency="USD",
                tax_rate_bps=1000,
                finalize=True,
                line_items=[LineItemInput(description="Seat", quantity=3, unit_amount=1000)],
            ),
        ),
        Invoice,
        "create invoice",
    )
    assert (invoice.status, invoice.total, invoice.number) == (InvoiceStatus.OPEN, 3300, "INV-000001"), invoice

    # Pay it with a test card; a retry with the same key gets the same payment back.
    card = CardInput(type_=PaymentMethodType.CARD, number="4242424242424242", exp_month=12, exp_year=2030, cvc="123")
    order = CreatePayment(invoice_id=invoice.id, payment_method=card)
    payment = expect(create_payment.sync(client=client, body=order, idempotency_key="order-42"), Payment, "pay")
    assert payment.status == PaymentStatus.PROCESSING and payment.amount == 3300, payment
    assert payment.payment_method.last4 == "4242", payment
    replay = expect(create_payment.sync(client=client, body=order, idempotency_key="order-42"), Payment, "retry")
    assert replay.id == payment.id, (replay, payment)

    # The simulator reports the outcome by signed webhook: the invoice becomes paid.
    deadline = time.monotonic() + WEBHOOK_WAIT_SECS
    while True:
        current = expect(get_invoice.sync(invoice.id, client=client), Invoice, "get invoice")
        if current.status == InvoiceStatus.PAID:
            break
        if time.monotonic() > deadline:
            sys.exit(f"invoice never paid: {current!r}")
        time.sleep(0.05)
    assert (current.amount_paid, current.amount_remaining) == (3300, 0), current
    settled = expect(get_payment.sync(payment.id, client=client), Payment, "get payment")
    assert settled.status == PaymentStatus.SUCCEEDED, settled

    # Its timeline shows every step, oldest first.
    timeline = invoice_timeline.sync(invoice.id, client=client)
    if not isinstance(timeline, list) or not all(isinstance(e, Event) for e in timeline):
        sys.exit(f"timeline: expected a list of events, got {timeline!r}")
    types = [str(event.event_type) for event in timeline]
    for step in ("invoice.created", "invoice.finalized", "payment.attempted", "payment.succeeded"):
        assert step in types, types
    assert types[0] == "invoice.created" and types[-1] == "invoice.paid", types
    sequences = [event.sequence for event in timeline]
    assert sequences == sorted(sequences), sequences
    print(f"quick start through the generated client: {len(types)} timeline events: {', '.join(types)}")


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
