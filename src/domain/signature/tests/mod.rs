//! Unit tests of signatures: the vectors each platform publishes, the table runner that checks
//! every refusal for leaks, and the signer; header spellings, windows and keys in `headers.rs`.

mod headers;

use super::request::malformed;
use super::*;

// GitHub: docs.github.com, "Validating webhook deliveries", section "Testing the webhook
// payload validation".
const GITHUB_SECRET: &str = "It's a Secret to Everybody";
const GITHUB_BODY: &[u8] = b"Hello, World!";
const GITHUB_HEX: &str = "757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17";
const GITHUB_SIGNATURE: &str =
    "sha256=757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17";

// Slack: api.slack.com/authentication/verifying-requests-from-slack, the worked example (a
// slash command, so the body is form-encoded).
const SLACK_SECRET: &str = "8f742231b10e8888abcd99yyyzzz85a5";
const SLACK_TS: i64 = 1_531_420_618;
const SLACK_BODY: &[u8] = b"token=xyzz0WbapA4vBCDEFasx0q6G&team_id=T1DC2JH3J&team_domain=testteamnow&channel_id=G8PSS9T3V&channel_name=foobar&user_id=U2CERLKJA&user_name=roadrunner&command=%2Fwebhook-collect&text=&response_url=https%3A%2F%2Fhooks.slack.com%2Fcommands%2FT1DC2JH3J%2F397700885554%2F96rGlfmibIGlgcZRskXaIFfN&trigger_id=398738663015.47445629121.803a0bc887a14d10d2c447fce8b6703c";
const SLACK_SIGNATURE: &str = "v0=a2114d57b48eac39b9ad189dd8316235a7b4a8d21a10bd27519666489c69b503";

// LINE: line/line-bot-sdk-nodejs, test/validate-signature.spec.ts; the body there is
// JSON.stringify({ hello: "world" }).
const LINE_SECRET: &str = "test_secret";
const LINE_BODY: &[u8] = br#"{"hello":"world"}"#;
const LINE_SIGNATURE: &str = "t7Hn4ZDHqs6e+wdvI5TyQIvzie0DmMUmuXEBqyyE/tM=";

// Stripe: stripe/stripe-dotnet, src/StripeTests/Services/Events/EventUtilityTest.cs, over the
// fixture src/StripeTests/Resources/event_test_signature.json (484 bytes with its final
// newline). Its header also carries a v0 signature, which must be ignored.
const STRIPE_SECRET: &str = "webhook_secret";
const STRIPE_TS: i64 = 1_533_204_620;
const STRIPE_BODY: &[u8] = concat!(
    "{\n",
    "  \"id\": \"evt_123\",\n",
    "  \"object\": \"event\",\n",
    "  \"account\": \"acct_123\",\n",
    "  \"api_version\": \"2017-05-25\",\n",
    "  \"created\": 1533204620,\n",
    "  \"data\": {\n",
    "    \"object\": {\n",
    "      \"id\": \"cus_123\",\n",
    "      \"object\": \"customer\",\n",
    "      \"created\": 123456789,\n",
    "      \"email\": \"test@stripe.com\",\n",
    "      \"livemode\": false,\n",
    "      \"metadata\": {}\n",
    "    }\n",
    "  },\n",
    "  \"livemode\": false,\n",
    "  \"pending_webhooks\": 1,\n",
    "  \"request\": {\n",
    "    \"id\": \"req_123\",\n",
    "    \"idempotency_key\": \"idempotency-key-123\"\n",
    "  },\n",
    "  \"type\": \"customer.created\"\n",
    "}\n",
)
.as_bytes();
const STRIPE_V1: &str = "2220f87ef101a04665f11cdf770523143f875572008577fa0f20882ddb9cc3c7";
const STRIPE_V0: &str = "63f3a72374a733066c4be69ed7f8e5ac85c22c9f0a6a612ab9a025a9e4ee7eef";

// Standard Webhooks: standard-webhooks/standard-webhooks,
// libraries/javascript/src/webhook.test.ts, test "sign function works" (the same vector is in
// Svix's manual-verification docs).
const SW_SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
const SW_ID: &str = "msg_p5jXN8AQM9LWM0D4loKWxJek";
const SW_TS: i64 = 1_614_265_330;
const SW_BODY: &[u8] = br#"{"test": 2432232314}"#;
const SW_SIGNATURE: &str = "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=";
// A well-formed v1 signature by some other key, from the same test file.
const SW_OTHER: &str = "v1,Ceo5qEr07ixe2NLpvHk3FH9bwy/WavXrAFQ/9tdO6mc=";

type Outcome = Result<Verified, SignatureError>;

/// One request, the keys it is verified against, and the outcome it must have.
#[derive(Clone)]
struct Case {
    what: String,
    params: VerifyParams<'static>,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
    secrets: Vec<&'static str>,
    want: Outcome,
}

impl Case {
    fn new(scheme: Scheme, headers: &[(&str, &str)], body: &[u8], secret: &'static str) -> Self {
        Case {
            what: scheme.to_string(),
            params: VerifyParams::new(scheme, 0),
            headers: headers
                .iter()
                .map(|(n, v)| (n.to_string(), v.to_string()))
                .collect(),
            body: body.to_vec(),
            secrets: vec![secret],
            want: ok(0, None, None),
        }
    }

    fn named(mut self, what: impl fmt::Display) -> Self {
        self.what = format!("{}: {what}", self.params.scheme);
        self
    }

    fn now(mut self, now_unix: i64) -> Self {
        self.params.now_unix = now_unix;
        self
    }

    fn tolerance(mut self, tolerance_secs: u64) -> Self {
        self.params.tolerance_secs = tolerance_secs;
        self
    }

    fn configured(mut self, signature_header: &'static str) -> Self {
        self.params.signature_header = Some(signature_header);
        self
    }

    /// Sets header `name` to `value`, replacing any header of that name.
    fn set(self, name: &str, value: impl Into<String>) -> Self {
        let mut case = self.unset(name);
        case.headers.push((name.to_owned(), value.into()));
        case
    }

    fn unset(mut self, name: &str) -> Self {
        self.headers
            .retain(|(key, _)| !key.eq_ignore_ascii_case(name));
        self
    }

    fn body(mut self, body: &[u8]) -> Self {
        self.body = body.to_vec();
        self
    }

    fn keys(mut self, secrets: &[&'static str]) -> Self {
        self.secrets = secrets.to_vec();
        self
    }

    fn want(mut self, want: Outcome) -> Self {
        self.want = want;
        self
    }
}

/// Verifies the case's request and compares the outcome with its `want`. Every refusal is
/// also checked for leaks: its message and `Debug` must not contain a key, nor any header
/// value long enough to be a signature.
fn check(case: Case) {
    let names: Vec<String> = (0..case.secrets.len())
        .map(|i| format!("key-{i}"))
        .collect();
    let keys: Vec<Key<'_>> = names
        .iter()
        .zip(&case.secrets)
        .map(|(name, secret)| Key {
            name,
            secret: secret.as_bytes(),
        })
        .collect();
    let got = verify(&case.params, &case.headers, &case.body, &keys);
    let what = &case.what;
    assert_eq!(got, case.want, "{what}");
    if let Err(err) = got {
        let shown = format!("{err} {err:?}");
        for secret in case.secrets.iter().filter(|secret| secret.len() >= 4) {
            assert!(
                !shown.contains(secret),
                "{what}: the error shows a key: {shown}"
            );
        }
        for (_, value) in case.headers.iter().filter(|(_, value)| value.len() >= 16) {
            assert!(
                !shown.contains(value),
                "{what}: the error shows a header value: {shown}"
            );
        }
    }
}

fn ok(key_index: usize, delivery_id: Option<&str>, timestamp: Option<i64>) -> Outcome {
    Ok(Verified {
        key_index,
        delivery_id: delivery_id.map(str::to_owned),
        timestamp,
    })
}

fn no_match(tried: usize) -> Outcome {
    Err(SignatureError::NoKeyMatched { tried })
}

fn missing(header: &str) -> Outcome {
    Err(SignatureError::MissingHeader {
        header: header.to_owned(),
    })
}

fn bad(header: &str, reason: &'static str) -> Outcome {
    Err(malformed(header, reason))
}

fn missing_timestamp(header: &'static str) -> Outcome {
    Err(SignatureError::MissingTimestamp { header })
}

fn bad_timestamp(header: &'static str) -> Outcome {
    Err(SignatureError::MalformedTimestamp { header })
}

/// The request a platform published, verified at a moment inside its window.
fn published(scheme: Scheme) -> Case {
    match scheme {
        // No platform publishes a plain vector; GitHub's is the same HMAC, spelled bare.
        Scheme::HmacSha256 => Case::new(
            scheme,
            &[("X-Webhook-Signature", GITHUB_HEX)],
            GITHUB_BODY,
            GITHUB_SECRET,
        ),
        Scheme::Github => Case::new(
            scheme,
            &[
                ("X-Hub-Signature-256", GITHUB_SIGNATURE),
                ("X-GitHub-Delivery", "d-1"),
            ],
            GITHUB_BODY,
            GITHUB_SECRET,
        )
        .want(ok(0, Some("d-1"), None)),
        Scheme::Slack => Case::new(
            scheme,
            &[
                ("X-Slack-Request-Timestamp", "1531420618"),
                ("X-Slack-Signature", SLACK_SIGNATURE),
            ],
            SLACK_BODY,
            SLACK_SECRET,
        )
        .now(SLACK_TS + 60)
        .want(ok(0, None, Some(SLACK_TS))),
        Scheme::Line => Case::new(
            scheme,
            &[("X-Line-Signature", LINE_SIGNATURE)],
            LINE_BODY,
            LINE_SECRET,
        ),
        Scheme::Stripe => Case::new(
            scheme,
            &[(
                "Stripe-Signature",
                &format!("t={STRIPE_TS},v1={STRIPE_V1},v0={STRIPE_V0}"),
            )],
            STRIPE_BODY,
            STRIPE_SECRET,
        )
        .now(STRIPE_TS + 100)
        .want(ok(0, None, Some(STRIPE_TS))),
        Scheme::StandardWebhooks => Case::new(
            scheme,
            &[
                ("webhook-id", SW_ID),
                ("webhook-timestamp", "1614265330"),
                ("webhook-signature", SW_SIGNATURE),
            ],
            SW_BODY,
            SW_SECRET,
        )
        .now(SW_TS)
        .want(ok(0, Some(SW_ID), Some(SW_TS))),
    }
}

/// A request signed by [`sign`] with `secret` at `now`, verified at the same moment.
fn signed(
    scheme: Scheme,
    configured: Option<&'static str>,
    secret: &'static str,
    now: i64,
) -> Case {
    let body = br#"{"type":"event_callback","event_id":"Ev1"}"#;
    let mut case = Case::new(scheme, &[], body, secret).now(now);
    case.headers = sign(scheme, configured, secret.as_bytes(), body, now, "evt_42");
    case.params.signature_header = configured;
    let delivery_id = match scheme {
        Scheme::Github | Scheme::StandardWebhooks => Some("evt_42"),
        Scheme::HmacSha256 | Scheme::Slack | Scheme::Line | Scheme::Stripe => None,
    };
    case.want(ok(0, delivery_id, scheme.is_timestamped().then_some(now)))
}

#[test]
fn published_vectors_verify() {
    for scheme in Scheme::ALL {
        check(published(scheme).named("published vector"));
    }
}

#[test]
fn published_vectors_refuse_a_wrong_key_a_flipped_byte_and_a_missing_header() {
    for scheme in Scheme::ALL {
        let v = published(scheme);
        check(
            v.clone()
                .named("wrong key")
                .keys(&["not the secret"])
                .want(no_match(1)),
        );
        for position in [0, v.body.len() / 2, v.body.len() - 1] {
            let mut body = v.body.clone();
            body[position] ^= 0x01;
            let what = format!("byte {position} flipped");
            check(v.clone().named(what).body(&body).want(no_match(1)));
        }
        let header = scheme.default_header();
        check(
            v.clone()
                .named("no signature header")
                .unset(header)
                .want(missing(header)),
        );
    }
}

#[test]
fn signer_reproduces_published_vectors() {
    for scheme in Scheme::ALL {
        let v = published(scheme);
        let header = scheme.default_header();
        let want = match scheme {
            Scheme::Stripe => format!("t={STRIPE_TS},v1={STRIPE_V1}"),
            _ => String::from_utf8_lossy(v.headers.get(header).unwrap_or_default()).into_owned(),
        };
        let timestamp = v.want.as_ref().ok().and_then(|verified| verified.timestamp);
        let id = if scheme == Scheme::StandardWebhooks {
            SW_ID
        } else {
            ""
        };
        let secret = v.secrets[0].as_bytes();
        let signed = sign(scheme, None, secret, &v.body, timestamp.unwrap_or(0), id);
        let got = signed.get(header).map(String::from_utf8_lossy);
        assert_eq!(got.as_deref(), Some(want.as_str()), "{scheme}");
    }
}

#[test]
fn sign_then_verify_round_trips_for_every_scheme() {
    let now = 1_700_000_000;
    for scheme in Scheme::ALL {
        let secret = match scheme {
            Scheme::StandardWebhooks => "whsec_c2VjcmV0LWZvci1yb3VuZC10cmlwcy0xMjM0",
            _ => "secret-for-round-trips",
        };
        for configured in [None, Some("X-Relayed-Signature")] {
            let v = signed(scheme, configured, secret, now);
            let verified_with_second_key = v.want.clone().map(|w| Verified { key_index: 1, ..w });
            check(
                v.clone()
                    .named(format!("header {configured:?}"))
                    .now(now + 5),
            );
            check(
                v.named(format!("header {configured:?}, second key"))
                    .keys(&["previous-secret", secret])
                    .want(verified_with_second_key),
            );
        }
    }
}

#[test]
fn scheme_names_parse_and_infer() {
    for scheme in Scheme::ALL {
        assert_eq!(Scheme::parse(scheme.name()), Ok(scheme));
        assert_eq!(scheme.name().parse::<Scheme>(), Ok(scheme));
        assert_eq!(scheme.to_string(), scheme.name());
        assert_eq!(
            Scheme::infer(Some(&scheme.default_header().to_uppercase())),
            scheme
        );
    }
    let names: Vec<&str> = Scheme::ALL.iter().map(|s| s.name()).collect();
    assert_eq!(SCHEME_NAMES, names.join(", "));
    assert_eq!(
        Scheme::parse("GitHub").map_err(|err| err.to_string()),
        Err(
            "unknown signature scheme \"GitHub\": expected one of hmac-sha256, github, slack, \
                 line, stripe, standard-webhooks"
                .to_owned()
        )
    );
    let inferred = [
        (None, Scheme::HmacSha256),
        (Some("X-Webhook-Signature"), Scheme::HmacSha256),
        (Some("X-Hub-Signature"), Scheme::HmacSha256),
        (Some("x-hub-signature-256"), Scheme::Github),
        (Some("X-SLACK-SIGNATURE"), Scheme::Slack),
        (Some(" x-line-signature "), Scheme::Line),
        (Some("stripe-signature"), Scheme::Stripe),
        (Some("Webhook-Signature"), Scheme::StandardWebhooks),
        (Some("X-Custom"), Scheme::HmacSha256),
    ];
    for (header, want) in inferred {
        assert_eq!(Scheme::infer(header), want, "{header:?}");
    }
    let timestamped: Vec<Scheme> = Scheme::ALL
        .into_iter()
        .filter(|s| s.is_timestamped())
        .collect();
    assert_eq!(
        timestamped,
        [Scheme::Slack, Scheme::Stripe, Scheme::StandardWebhooks]
    );
}

#[test]
fn keys_never_show_their_secret() {
    let key = Key {
        name: "current",
        secret: b"hunter2-super-secret",
    };
    let shown = format!("{key:?}");
    assert!(
        shown.contains("current") && !shown.contains("hunter2"),
        "{shown}"
    );
}
