"""Verifies recorded outbound webhook deliveries with the standardwebhooks package.

Reads JSON on stdin: {"secret": "whsec_...", "deliveries": [{"headers": {...}, "body": "..."}]}
and checks every delivery with `Webhook(secret).verify`. Prints the number verified; exits 1
naming the first delivery that does not verify.
"""

import json
import sys

from standardwebhooks.webhooks import Webhook


def main() -> int:
    request = json.load(sys.stdin)
    hook = Webhook(request["secret"])
    for i, delivery in enumerate(request["deliveries"]):
        try:
            payload = hook.verify(delivery["body"], delivery["headers"])
        except Exception as err:  # the package raises its own WebhookVerificationError
            print(f"delivery {i} does not verify: {err!r}", file=sys.stderr)
            return 1
        if payload.get("id") != delivery["headers"].get("webhook-id"):
            print(f"delivery {i}: body id differs from webhook-id", file=sys.stderr)
            return 1
    print(len(request["deliveries"]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
