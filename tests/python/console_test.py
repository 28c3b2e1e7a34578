"""The operator console in headless Chromium (Debian's package), driven by Playwright.

Run by tests/api/console.rs against a live server: PAYRAIL_URL, PAYRAIL_ADMIN_TOKEN,
PAYRAIL_CHROMIUM, PAYRAIL_ARTEFACTS (screenshots) and PAYRAIL_AXE (axe-core's axe.min.js).
Data is created through the public API; every check reads what the page shows. Exits non-zero
on the first failed check.
"""

import http.server
import json
import os
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
import uuid

from playwright.sync_api import expect, sync_playwright

BASE = os.environ["PAYRAIL_URL"]
ADMIN = os.environ["PAYRAIL_ADMIN_TOKEN"]
CHROMIUM = os.environ["PAYRAIL_CHROMIUM"]
ARTEFACTS = os.environ["PAYRAIL_ARTEFACTS"]
AXE = os.environ["PAYRAIL_AXE"]
CHROMIUM_ARGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
]
WAIT_MS = 10_000
INVOICES = 12
# Invoices created (and finalized: two events each) for the endpoints scenario.
ENDPOINT_INVOICES = 6


def call(method, path, token, body=None):
    request = urllib.request.Request(
        BASE + path, method=method,
        data=None if body is None else json.dumps(body).encode(),
        headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json",
                 "Idempotency-Key": str(uuid.uuid4())} if method == "POST" else
                {"Authorization": f"Bearer {token}"})
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return json.load(response)
    except urllib.error.HTTPError as error:
        raise AssertionError(f"{method} {path}: {error.code} {error.read()!r}") from None


def seed():
    """A tenant with INVOICES invoices: one paid, one draft, the rest open."""
    tenant = call("POST", "/api/tenants", ADMIN, {"name": f"Console Co {uuid.uuid4().hex[:6]}"})
    key = tenant["apiKey"]["key"]
    invoices = []
    for i in range(INVOICES):
        invoices.append(call("POST", "/api/invoices", key, {
            "customerName": "Grace Hopper" if i == 0 else f"Customer {i:02}",
            "customerEmail": f"c{i}@example.com", "currency": "EUR", "taxRateBps": 2000,
            "finalize": i != 1,
            "lineItems": [{"description": "Seat", "quantity": 1 + i, "unitAmount": 1000}]}))
    return tenant, key, invoices


class Receiver:
    """A plain-HTTP webhook receiver on 127.0.0.1 that answers every delivery 204."""

    def __init__(self):
        received = self.received = []

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self):
                length = int(self.headers.get("Content-Length", 0))
                received.append((self.headers.get("webhook-id"), self.rfile.read(length)))
                self.send_response(204)
                self.end_headers()

            def log_message(self, *args):
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/payrail"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self):
        self.server.shutdown()
        self.server.server_close()


def screenshot(page, name):
    page.screenshot(path=os.path.join(ARTEFACTS, f"{name}.png"), full_page=True)


def check_accessibility(page, name):
    """axe-core in the page: no serious or critical violation. Evaluated through the DevTools
    protocol: the console's Content-Security-Policy rightly refuses an injected script tag."""
    if not page.evaluate("typeof window.axe === 'object'"):
        with open(AXE, encoding="utf-8") as source:
            page.evaluate(source.read())
    result = page.evaluate("async () => await axe.run(document, {resultTypes: ['violations']})")
    bad = [v for v in result["violations"] if v["impact"] in ("serious", "critical")]
    assert not bad, f"{name}: " + "; ".join(
        f"{v['id']} ({v['impact']}): {v['help']} at {[n['target'] for n in v['nodes']][:3]}"
        for v in bad)


def sign_in(page, token):
    page.goto(f"{BASE}/console")
    page.get_by_label("API key or platform admin token").fill(token)
    page.get_by_role("button", name="Sign in").click()


def wrong_key_is_refused(page):
    sign_in(page, "prk_key_01jd6x2c8ef9r4t7bq5n1k3h2m_notthesecret")
    expect(page.get_by_role("alert")).to_contain_text("refused", timeout=WAIT_MS)
    expect(page.get_by_role("heading", level=1)).to_have_text("Sign in")
    assert page.evaluate("sessionStorage.length") == 0, "a refused key was kept"
    check_accessibility(page, "sign-in")
    screenshot(page, "01-wrong-key")


def platform_view(page, tenant):
    sign_in(page, ADMIN)
    expect(page.get_by_role("heading", level=1)).to_have_text("Tenants", timeout=WAIT_MS)
    row = page.get_by_role("row").filter(has_text=tenant["name"])
    expect(row).to_contain_text(tenant["id"])
    volumes = call("GET", f"/api/tenants/{tenant['id']}/volumes", ADMIN)
    cells = row.get_by_role("cell")
    expect(cells.nth(3)).to_have_text(str(INVOICES))
    expect(cells.nth(6)).to_have_text(str(volumes["events"]))
    screenshot(page, "02-platform")
    page.get_by_role("button", name="Sign out").click()
    expect(page.get_by_role("heading", level=1)).to_have_text("Sign in")
    assert page.evaluate("sessionStorage.length") == 0


def invoices_filter_and_page(page, key, invoices):
    sign_in(page, key)
    expect(page.get_by_role("heading", level=1)).to_have_text("Invoices", timeout=WAIT_MS)
    expect(page.get_by_text(f"{INVOICES} invoices match.")).to_be_visible()
    expect(page.get_by_text("Page 1 of 2")).to_be_visible()
    page.get_by_role("button", name="Next page").click()
    expect(page.get_by_text("Page 2 of 2")).to_be_visible()
    # Newest first: the second page ends with the first invoice created.
    expect(page.get_by_role("link", name=invoices[0]["number"])).to_be_visible()
    page.get_by_label("Status").select_option("draft")
    page.get_by_role("button", name="Apply filters").click()
    expect(page.get_by_text("1 invoice match.")).to_be_visible()
    expect(page.get_by_role("link", name=invoices[1]["number"])).to_be_visible()
    page.get_by_label("Status").select_option("")
    page.get_by_label("Customer").fill("hopper")
    page.get_by_role("button", name="Apply filters").click()
    expect(page.get_by_text("1 invoice match.")).to_be_visible()
    expect(page.get_by_role("row").filter(has_text="Grace Hopper")).to_contain_text("€12.00")
    check_accessibility(page, "invoices")
    screenshot(page, "03-invoices-filtered")


def live_timeline(page, key, invoice):
    page.goto(f"{BASE}/console#/invoices/{invoice['id']}")
    expect(page.get_by_role("heading", level=1)).to_contain_text(invoice["number"], timeout=WAIT_MS)
    expect(page.get_by_role("heading", level=1)).to_contain_text("open")
    expect(page.get_by_text("Live updates: on.")).to_be_visible(timeout=WAIT_MS)
    timeline = page.get_by_role("list", name="Timeline, oldest first")
    expect(timeline.get_by_role("listitem")).to_have_count(2)
    page.evaluate("window.__sameDocument = true")
    call("POST", "/api/payments", key, {
        "invoiceId": invoice["id"],
        "paymentMethod": {"type": "card", "number": "4242424242424242", "expMonth": 12,
                          "expYear": 2040, "cvc": "123"}})
    # The gateway simulator reports by signed webhook; the stream brings it here.
    expect(timeline).to_contain_text("payment.succeeded", timeout=WAIT_MS)
    expect(timeline).to_contain_text("invoice.paid", timeout=WAIT_MS)
    expect(page.get_by_role("heading", level=1)).to_contain_text("paid")
    expect(page.locator("dl.facts").nth(1)).to_contain_text("Paid€12.00Pending€0.00Remaining€0.00")
    expect(page.locator("dl.facts").nth(0)).not_to_contain_text("Paid—")
    assert page.evaluate("window.__sameDocument === true"), "the page was reloaded"
    sequences = page.eval_on_selector_all(
        "ol.timeline li", "items => items.map(i => Number(i.dataset.sequence))")
    assert sequences == sorted(sequences) and len(set(sequences)) == len(sequences), sequences
    check_accessibility(page, "invoice")
    screenshot(page, "04-invoice-live")


def payments_intake_system(page):
    page.get_by_role("link", name="Payments").click()
    expect(page.get_by_role("heading", level=1)).to_have_text("Payments", timeout=WAIT_MS)
    expect(page.get_by_text("1 payment match.")).to_be_visible()
    expect(page.get_by_role("row").filter(has_text="succeeded")).to_contain_text("€12.00")
    page.get_by_role("link", name="Webhook intake").click()
    expect(page.get_by_role("heading", level=1)).to_have_text("Webhook intake", timeout=WAIT_MS)
    totals = page.get_by_role("table", name="Totals over the last 15 minutes")
    received = int(totals.get_by_role("cell").nth(0).inner_text().replace(",", ""))
    applied = int(totals.get_by_role("cell").nth(1).inner_text().replace(",", ""))
    assert received >= 1 and applied >= 1, (received, applied)
    expect(page.locator("figure.chart canvas")).to_have_count(1)
    screenshot(page, "05-intake")
    page.get_by_role("link", name="System").click()
    expect(page.get_by_role("heading", level=1)).to_have_text("System", timeout=WAIT_MS)
    expect(page.locator("figure.chart canvas")).to_have_count(5)
    requests = page.get_by_role("group", name="HTTP requests per second")
    expect(requests).to_contain_text("Latest: requests/s", timeout=WAIT_MS)
    actors = page.get_by_role("group", name="Live actors and streams")
    expect(actors).to_contain_text("invoices")
    check_accessibility(page, "system")
    screenshot(page, "06-system")


def keyboard_only(page, key, invoices):
    """Sign in and reach an invoice's page with the keyboard alone."""
    page.evaluate("sessionStorage.clear()")
    page.goto(f"{BASE}/console#/signin")
    expect(page.get_by_role("heading", level=1)).to_have_text("Sign in", timeout=WAIT_MS)
    field = page.get_by_label("API key or platform admin token")
    for _ in range(10):
        if field.evaluate("el => el === document.activeElement"):
            break
        page.keyboard.press("Tab")
    else:
        raise AssertionError("Tab never reached the credential field")
    page.keyboard.type(key)
    page.keyboard.press("Enter")
    expect(page.get_by_role("heading", level=1)).to_have_text("Invoices", timeout=WAIT_MS)
    # Focus moved to the new page's heading, as a page load would.
    assert page.evaluate("document.activeElement.tagName") == "H1"
    target = invoices[-1]["number"]
    for _ in range(80):
        page.keyboard.press("Tab")
        if page.evaluate("document.activeElement.textContent") == target:
            break
    else:
        raise AssertionError(f"Tab never reached the link to {target}")
    # The focused link shows where focus is.
    outline = page.evaluate("getComputedStyle(document.activeElement).outlineStyle")
    assert outline != "none", f"no focus indicator on the link ({outline})"
    page.keyboard.press("Enter")
    expect(page.get_by_role("heading", level=1)).to_contain_text(target, timeout=WAIT_MS)
    screenshot(page, "07-keyboard")


def endpoint_attempts(page, key, receiver):
    """An endpoint subscribed through the API: listed, opened, its attempts filtered and paged."""
    endpoint = call("POST", "/api/webhook-endpoints", key,
                    {"url": receiver.url, "description": "Ledger sync"})
    secret = endpoint["secret"]
    for i in range(ENDPOINT_INVOICES):
        call("POST", "/api/invoices", key, {
            "customerName": f"Subscriber {i}", "currency": "EUR", "finalize": True,
            "lineItems": [{"description": "Seat", "quantity": 1, "unitAmount": 500}]})
    expected = 2 * ENDPOINT_INVOICES
    path = f"/api/webhook-endpoints/{endpoint['id']}/attempts?status=succeeded&limit=100"
    deadline = time.monotonic() + WAIT_MS / 1000
    while len(call("GET", path, key)["items"]) < expected:
        assert time.monotonic() < deadline, f"fewer than {expected} deliveries succeeded in time"
        time.sleep(0.1)
    assert len({webhook_id for webhook_id, _ in receiver.received}) == expected

    page.get_by_role("link", name="Endpoints").click()
    expect(page.get_by_role("heading", level=1)).to_have_text("Webhook endpoints", timeout=WAIT_MS)
    expect(page.get_by_text("1 endpoint.")).to_be_visible()
    row = page.get_by_role("row").filter(has_text=receiver.url)
    expect(row).to_contain_text("Ledger sync")
    expect(row.get_by_role("cell").nth(2)).to_have_text("all")
    expect(row).to_contain_text("enabled")
    assert secret not in page.content(), "the secret is on the page"
    check_accessibility(page, "endpoints")
    screenshot(page, "08-endpoints")

    row.get_by_role("link", name=receiver.url).click()
    expect(page.get_by_role("heading", level=1)).to_contain_text(endpoint["id"], timeout=WAIT_MS)
    expect(page.locator("dl.facts")).to_contain_text(receiver.url)
    attempts = page.get_by_role("table", name="Delivery attempts, newest first")
    expect(attempts.locator("tbody tr")).to_have_count(expected)
    expect(page.get_by_text(f"{expected} attempts shown.")).to_be_visible()
    first = attempts.locator("tbody tr").first.get_by_role("cell")
    expect(first.nth(1)).to_have_text("1")
    expect(first.nth(2)).to_have_text("succeeded")
    expect(first.nth(3)).to_have_text("204")
    # A smaller page: the rest comes with "More attempts", operated from the keyboard.
    page.get_by_label("Per page").select_option("10")
    page.get_by_role("button", name="Apply filters").click()
    expect(attempts.locator("tbody tr")).to_have_count(10, timeout=WAIT_MS)
    expect(page.get_by_text("10 attempts shown; more are older.")).to_be_visible()
    page.get_by_role("button", name="More attempts").focus()
    page.keyboard.press("Enter")
    expect(attempts.locator("tbody tr")).to_have_count(expected, timeout=WAIT_MS)
    expect(page.get_by_text(f"{expected} attempts shown.")).to_be_visible()
    expect(page.get_by_text("All attempts shown.")).to_be_focused()
    shown = page.eval_on_selector_all(
        "table tbody tr td:first-child", "cells => cells.map(c => c.textContent)")
    assert sorted(shown) == sorted(webhook_id for webhook_id, _ in receiver.received), shown
    check_accessibility(page, "endpoint")
    screenshot(page, "09-endpoint-attempts")
    page.get_by_label("Status").select_option("failed")
    page.get_by_role("button", name="Apply filters").click()
    expect(page.get_by_text("0 attempts shown.", exact=True)).to_be_visible(timeout=WAIT_MS)
    expect(attempts).to_contain_text("Nothing to show.")
    expect(page.get_by_role("button", name="More attempts")).to_have_count(0)


def main():
    tenant, key, invoices = seed()
    receiver = Receiver()
    with sync_playwright() as playwright:
        context = playwright.chromium.launch_persistent_context(
            tempfile.mkdtemp(prefix="payrail-chromium-"), executable_path=CHROMIUM,
            headless=True, args=CHROMIUM_ARGS, viewport={"width": 1280, "height": 900})
        page = context.new_page()
        errors = []
        page.on("pageerror", lambda error: errors.append(str(error)))
        page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
        started = time.monotonic()
        try:
            wrong_key_is_refused(page)
            platform_view(page, tenant)
            invoices_filter_and_page(page, key, invoices)
            live_timeline(page, key, invoices[0])
            payments_intake_system(page)
            keyboard_only(page, key, invoices)
            endpoint_attempts(page, key, receiver)
        except Exception:
            screenshot(page, "failure")
            raise
        finally:
            context.close()
            receiver.close()
        # The wrong key's 401 is the one error the browser may log.
        unexpected = [e for e in errors if "401" not in e]
        assert not unexpected, f"errors in the page: {unexpected}"
    print(f"console scenarios passed in {time.monotonic() - started:.1f}s")


if __name__ == "__main__":
    try:
        main()
    except AssertionError as failure:
        print(f"console check failed: {failure}", file=sys.stderr)
        sys.exit(1)
