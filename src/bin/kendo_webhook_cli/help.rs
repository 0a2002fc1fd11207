//! The help texts of `kendo-webhook` (`--help` shows the long ones).

pub(crate) const ABOUT: &str =
    "Send, sign and verify Kendo webhook deliveries exactly as Kendo does.";

pub(crate) const LONG_ABOUT: &str = "\
Send, sign and verify Kendo webhook deliveries exactly as Kendo does.

Test your endpoint before Kendo calls it: `send` POSTs a signed delivery with
Kendo's four headers, its 10 s timeout per attempt and its retry policy (3
attempts, about 1 s then 2 s apart, the same delivery id each time). `sign` and
`verify` compute and check an X-Kendo-Signature (HMAC-SHA256 of the raw body,
lowercase hex) for a body you have.

The secret comes from --secret or the KENDO_WEBHOOK_SECRET environment
variable. Prefer the variable: command-line arguments are visible to other
users of the machine. The secret is never printed.

Examples:
  export KENDO_WEBHOOK_SECRET='whsec_...'
  kendo-webhook send --url http://127.0.0.1:3000/webhooks/kendo
  kendo-webhook send --url http://127.0.0.1:3000/webhooks/kendo --event ai.training.completed --test
  kendo-webhook sign body.json
  kendo-webhook verify --signature 5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843 body.json

Exit codes: 0 success; 1 the delivery got no 2xx, or the signature does not
verify; 2 usage or I/O error.";

pub(crate) const SEND_ABOUT: &str =
    "POST a signed delivery with Kendo's headers, timeout and retries";

pub(crate) const SEND_LONG_ABOUT: &str = "\
POST a signed delivery with Kendo's headers, timeout and retries.

The body is Kendo's documented example payload for --event, with a fresh event
id (evt_<hex>) and created_at set to now; with --data FILE (or - for stdin) the
file's JSON object becomes `data` inside the envelope {id, event, created_at,
data} instead. --test adds \"_isTest\": true to `data`, as Kendo's \"Send Test\"
button does.

The request carries Content-Type: application/json, X-Kendo-Signature,
X-Kendo-Event and X-Kendo-Delivery-Id (a fresh dlv_<hex> unless given). Each
attempt times out after 10 s; a timeout, a connection error or any non-2xx
status (redirects are not followed) is retried: 3 attempts in all, waiting
about 1 s and then 2 s, with the same delivery id and the same bytes. One line
is printed per attempt: status, latency and the receiver's
x-kendo-webhook-rejection reason when it sends one.

Exits 0 on a 2xx, 1 when all 3 attempts failed, 2 on a usage or I/O error.

Examples (the secret in --secret or KENDO_WEBHOOK_SECRET):
  kendo-webhook send --url http://127.0.0.1:3000/webhooks/kendo --secret whsec_test
  KENDO_WEBHOOK_SECRET=whsec_test kendo-webhook send --url https://crm.example.com/webhooks/kendo --event ai.training.completed --test
  echo '{\"callId\": \"c_42\", \"aiScore\": \"71\"}' | kendo-webhook send --url http://127.0.0.1:3000/webhooks/kendo --data -
  kendo-webhook send --url http://127.0.0.1:3000/webhooks/kendo --event-id evt_1 --delivery-id dlv_1   # send twice: the second is a duplicate";

pub(crate) const SIGN_ABOUT: &str =
    "Print the X-Kendo-Signature of a body (the exact bytes of FILE or stdin)";

pub(crate) const SIGN_LONG_ABOUT: &str = "\
Print the X-Kendo-Signature of a body: lowercase hex of HMAC-SHA256 keyed with
the secret, over the exact bytes of FILE (or stdin with - or no FILE). Nothing
is trimmed or re-encoded: a trailing newline is part of the body and changes
the signature.

Examples:
  kendo-webhook sign --secret whsec_test body.json
  printf '%s' '{\"id\":\"evt_1\"}' | KENDO_WEBHOOK_SECRET=whsec_test kendo-webhook sign
  curl -X POST http://127.0.0.1:3000/webhooks/kendo -H 'Content-Type: application/json' \\
    -H \"X-Kendo-Signature: $(kendo-webhook sign body.json)\" -H 'X-Kendo-Event: call.uploaded' \\
    -H 'X-Kendo-Delivery-Id: dlv_1' --data-binary @body.json";

pub(crate) const VERIFY_ABOUT: &str = "Check an X-Kendo-Signature against a body (FILE or stdin)";

pub(crate) const VERIFY_LONG_ABOUT: &str = "\
Check an X-Kendo-Signature against the exact bytes of a body (FILE, or stdin
with - or no FILE), as the receiving layer does: 64 hex digits of either case,
optionally prefixed by sha256=, compared in constant time.

Prints `ok (secret current)` (or `previous` when it matched
--previous-secret) and exits 0; otherwise prints one line with the stable
reason and what to check, and exits 1. Exits 2 on a usage or I/O error.

Examples:
  kendo-webhook verify --secret whsec_test --signature 5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843 body.json
  cat body.json | kendo-webhook verify --signature \"$SIG\" --previous-secret \"$OLD_SECRET\" -";
