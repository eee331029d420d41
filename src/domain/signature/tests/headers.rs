//! Header names and spellings, the timestamp window both ways, malformed and non-UTF-8 headers,
//! several signatures and several keys, and empty secrets, each checked through the runner.

use super::*;

#[test]
fn header_names_and_spellings() {
    use Scheme::{Github, HmacSha256, Line, Slack};
    let cases = [
        published(HmacSha256)
            .named("sha256= prefix")
            .set("X-Webhook-Signature", GITHUB_SIGNATURE),
        published(HmacSha256)
            .named("upper-case prefix and hex")
            .set(
                "X-Webhook-Signature",
                format!("SHA256={}", GITHUB_HEX.to_uppercase()),
            ),
        published(HmacSha256)
            .named("lower-case name, padded value")
            .unset("X-Webhook-Signature")
            .set("x-webhook-signature", format!(" {GITHUB_HEX} ")),
        published(HmacSha256)
            .named("configured header")
            .configured("X-Signature")
            .unset("X-Webhook-Signature")
            .set("x-signature", GITHUB_HEX),
        published(HmacSha256)
            .named("configured header absent")
            .configured("X-Signature")
            .want(missing("X-Signature")),
        published(Github)
            .named("configured header")
            .configured("X-Hub-Signature-256-Relayed")
            .unset("X-Hub-Signature-256")
            .set("X-Hub-Signature-256-Relayed", GITHUB_SIGNATURE),
        published(Github)
            .named("lower-case names")
            .unset("X-Hub-Signature-256")
            .set("x-hub-signature-256", GITHUB_SIGNATURE)
            .unset("X-GitHub-Delivery")
            .set("x-github-delivery", "d-1"),
        published(Github)
            .named("no delivery id")
            .unset("X-GitHub-Delivery")
            .want(ok(0, None, None)),
        published(Slack)
            .named("a configured header is ignored")
            .configured("X-Other"),
        published(Line)
            .named("configured header")
            .configured("X-Line-Signature-Relayed")
            .unset("X-Line-Signature")
            .set("X-Line-Signature-Relayed", LINE_SIGNATURE),
    ];
    for case in cases {
        check(case);
    }
}

#[test]
fn timestamped_schemes_enforce_the_window_both_ways() {
    let at = 1_700_000_000;
    for scheme in Scheme::ALL.into_iter().filter(|s| s.is_timestamped()) {
        let v = signed(scheme, None, "window-secret", at);
        let stale = |age_secs, tolerance_secs| {
            Err(SignatureError::StaleTimestamp {
                age_secs,
                tolerance_secs,
            })
        };
        let future = |ahead_secs, tolerance_secs| {
            Err(SignatureError::FutureTimestamp {
                ahead_secs,
                tolerance_secs,
            })
        };
        let cases = [
            v.clone().named("at the signing second"),
            v.clone().named("at the end of the window").now(at + 300),
            v.clone().named("at the start of the window").now(at - 300),
            v.clone()
                .named("a second stale")
                .now(at + 301)
                .want(stale(301, 300)),
            v.clone()
                .named("a second in the future")
                .now(at - 301)
                .want(future(301, 300)),
            v.clone()
                .named("a minute stale, 10s tolerance")
                .now(at + 60)
                .tolerance(10)
                .want(stale(60, 10)),
            v.clone()
                .named("now at i64::MIN")
                .now(i64::MIN)
                .want(future(at.abs_diff(i64::MIN), 300)),
            // A forgery is reported as a forgery, whatever its timestamp says.
            v.clone()
                .named("stale and forged")
                .now(at + 3600)
                .keys(&["other"])
                .want(no_match(1)),
        ];
        for case in cases {
            check(case);
        }
    }
}

#[test]
fn malformed_headers_are_named_and_refused() {
    use Scheme::{Github, HmacSha256, Line, Slack, StandardWebhooks, Stripe};
    let (plain, slack, stripe, sw) = (
        "X-Webhook-Signature",
        "X-Slack-Signature",
        "Stripe-Signature",
        "webhook-signature",
    );
    let slack_ts = "X-Slack-Request-Timestamp";
    let no_v1 = "no v1 signature is base64 of 32 bytes";
    let cases = [
        published(HmacSha256)
            .named("not hex")
            .set(plain, "zz".repeat(32))
            .want(bad(plain, "expected hex")),
        published(HmacSha256)
            .named("31 bytes")
            .set(plain, &GITHUB_HEX[2..])
            .want(bad(plain, "expected hex")),
        published(HmacSha256)
            .named("blank")
            .set(plain, "  ")
            .want(bad(plain, "empty")),
        published(Github)
            .named("bare hex")
            .set("X-Hub-Signature-256", GITHUB_HEX)
            .want(bad("X-Hub-Signature-256", "expected sha256=<hex>")),
        published(Github)
            .named("sha1= prefix")
            .set("X-Hub-Signature-256", format!("sha1={GITHUB_HEX}"))
            .want(bad("X-Hub-Signature-256", "expected sha256=<hex>")),
        published(Github)
            .named("bad hex")
            .set("X-Hub-Signature-256", "sha256=xyz")
            .want(bad("X-Hub-Signature-256", "expected hex")),
        published(Slack)
            .named("no v0=")
            .set(slack, &SLACK_SIGNATURE[3..])
            .want(bad(slack, "expected v0=<hex>")),
        published(Slack)
            .named("bad hex")
            .set(slack, "v0=0g")
            .want(bad(slack, "expected hex")),
        published(Slack)
            .named("no timestamp")
            .unset(slack_ts)
            .want(missing_timestamp(slack_ts)),
        published(Slack)
            .named("fractional timestamp")
            .set(slack_ts, "1531420618.5")
            .want(bad_timestamp(slack_ts)),
        published(Slack)
            .named("signed timestamp")
            .set(slack_ts, "+1531420618")
            .want(bad_timestamp(slack_ts)),
        published(Slack)
            .named("timestamp beyond i64")
            .set(slack_ts, "9".repeat(20))
            .want(bad_timestamp(slack_ts)),
        published(Line)
            .named("not base64")
            .set(
                "X-Line-Signature",
                "t7Hn4ZDHqs6e+wdvI5TyQIvzie0DmMUmuXEBqyyE/tM!",
            )
            .want(bad("X-Line-Signature", "expected base64")),
        published(Line)
            .named("31 bytes")
            .set("X-Line-Signature", BASE64.encode([7u8; 31]))
            .want(bad("X-Line-Signature", "expected base64")),
        published(Line)
            .named("hex instead of base64")
            .set("X-Line-Signature", GITHUB_HEX)
            .want(bad("X-Line-Signature", "expected base64")),
        published(Stripe)
            .named("no t=")
            .set(stripe, format!("v1={STRIPE_V1}"))
            .want(missing_timestamp(stripe)),
        published(Stripe)
            .named("t= not a number")
            .set(stripe, format!("t=yesterday,v1={STRIPE_V1}"))
            .want(bad_timestamp(stripe)),
        published(Stripe)
            .named("two t=")
            .set(stripe, format!("t={STRIPE_TS},t=1,v1={STRIPE_V1}"))
            .want(bad(stripe, "more than one t= timestamp")),
        published(Stripe)
            .named("only v0")
            .set(stripe, format!("t={STRIPE_TS},v0={STRIPE_V0}"))
            .want(bad(stripe, "no v1= signature")),
        published(Stripe)
            .named("v1 not hex")
            .set(stripe, format!("t={STRIPE_TS},v1=invalid"))
            .want(bad(stripe, "no v1= signature is 64 hex digits")),
        published(StandardWebhooks)
            .named("no webhook-id")
            .unset("webhook-id")
            .want(missing("webhook-id")),
        published(StandardWebhooks)
            .named("blank webhook-id")
            .set("webhook-id", "")
            .want(bad("webhook-id", "empty")),
        published(StandardWebhooks)
            .named("no webhook-timestamp")
            .unset("webhook-timestamp")
            .want(missing_timestamp("webhook-timestamp")),
        published(StandardWebhooks)
            .named("webhook-timestamp not a number")
            .set("webhook-timestamp", "hello")
            .want(bad_timestamp("webhook-timestamp")),
        // From the Standard Webhooks tests: base64, but of 18 bytes.
        published(StandardWebhooks)
            .named("short signature")
            .set(sw, "v1,dawfeoifkpqwoekfpqoekf")
            .want(bad(sw, no_v1)),
        published(StandardWebhooks)
            .named("empty v1")
            .set(sw, "v1,")
            .want(bad(sw, no_v1)),
        published(StandardWebhooks)
            .named("bad base64")
            .set(sw, "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1O*=")
            .want(bad(sw, no_v1)),
        published(StandardWebhooks)
            .named("only other versions")
            .set(sw, format!("v1a,{0} v2,{0}", &SW_SIGNATURE[3..]))
            .want(bad(sw, "no v1 signature")),
        published(StandardWebhooks)
            .named("commas between signatures")
            .set(sw, format!("{SW_OTHER},{SW_SIGNATURE}"))
            .want(bad(sw, no_v1)),
    ];
    for case in cases {
        check(case);
    }
}

#[test]
fn header_values_that_are_not_utf8_are_malformed() {
    let headers: [(&str, &[u8]); 1] = [("X-Line-Signature", b"t7Hn4ZDHqs6e\xff")];
    let keys = [Key {
        name: "k",
        secret: LINE_SECRET.as_bytes(),
    }];
    let got = verify(
        &VerifyParams::new(Scheme::Line, 0),
        &headers,
        LINE_BODY,
        &keys,
    );
    assert_eq!(got, bad("X-Line-Signature", "not valid UTF-8"));
}

#[test]
fn several_signatures_and_several_keys() {
    use Scheme::{Github, StandardWebhooks, Stripe};
    let (stripe, sw) = ("Stripe-Signature", "webhook-signature");
    let zeros = "0".repeat(64);
    let sw_key_2 = "whsec_c2VjcmV0LW9mLWFub3RoZXItZW5kcG9pbnQ=";
    let sw_ok = |key_index| ok(key_index, Some(SW_ID), Some(SW_TS));
    let cases = [
        published(Stripe)
            .named("the second v1 is right")
            .set(stripe, format!("t={STRIPE_TS},v1={zeros},v1={STRIPE_V1}")),
        published(Stripe)
            .named("a malformed v1 beside a right one, with spaces")
            .set(
                stripe,
                format!("t={STRIPE_TS}, v1=invalid, v1={STRIPE_V1}, v0={STRIPE_V0}"),
            ),
        published(Stripe)
            .named("several wrong v1")
            .set(stripe, format!("t={STRIPE_TS},v1={zeros},v1={STRIPE_V0}"))
            .want(no_match(1)),
        published(Stripe)
            .named("a right signature under v0 is not accepted")
            .set(stripe, format!("t={STRIPE_TS},v1={zeros},v0={STRIPE_V1}"))
            .want(no_match(1)),
        // The list of the Standard Webhooks tests, with the published signature inside.
        published(StandardWebhooks)
            .named("one right among several")
            .set(
                sw,
                format!("{SW_OTHER} v2,{} {SW_SIGNATURE} {SW_OTHER}", &SW_OTHER[3..]),
            ),
        published(StandardWebhooks)
            .named("several wrong")
            .set(sw, format!("{SW_OTHER}  {SW_OTHER}"))
            .want(no_match(1)),
        published(StandardWebhooks)
            .named("the second key matches")
            .keys(&[sw_key_2, SW_SECRET])
            .want(sw_ok(1)),
        published(StandardWebhooks)
            .named("an undecodable key is skipped")
            .keys(&["whsec_not*base64", SW_SECRET])
            .want(sw_ok(1)),
        published(StandardWebhooks)
            .named("only unusable keys")
            .keys(&["whsec_not*base64", "whsec_", ""])
            .want(Err(SignatureError::NoKeyConfigured)),
        // Some libraries decode a key without the prefix too; here it is raw bytes.
        published(StandardWebhooks)
            .named("a key without whsec_ is raw bytes")
            .keys(&[&SW_SECRET[6..]])
            .want(no_match(1)),
        published(Github)
            .named("the second key matches")
            .keys(&["old", GITHUB_SECRET])
            .want(ok(1, Some("d-1"), None)),
        published(Github)
            .named("the third key matches")
            .keys(&["older", "old", GITHUB_SECRET])
            .want(ok(2, Some("d-1"), None)),
        published(Github)
            .named("the first of two matching keys is reported")
            .keys(&["old", GITHUB_SECRET, GITHUB_SECRET])
            .want(ok(1, Some("d-1"), None)),
        published(Github)
            .named("an empty key is skipped but keeps its index")
            .keys(&["", GITHUB_SECRET])
            .want(ok(1, Some("d-1"), None)),
        published(Github)
            .named("two wrong keys")
            .keys(&["old", "older"])
            .want(no_match(2)),
        published(Github)
            .named("empty keys are not counted")
            .keys(&["", "old", ""])
            .want(no_match(1)),
        published(Github)
            .named("all keys empty")
            .keys(&["", ""])
            .want(Err(SignatureError::NoKeyConfigured)),
        published(Github)
            .named("no keys")
            .keys(&[])
            .want(Err(SignatureError::NoKeyConfigured)),
        published(Github)
            .named("no key configured outranks a missing header")
            .unset("X-Hub-Signature-256")
            .keys(&[""])
            .want(Err(SignatureError::NoKeyConfigured)),
    ];
    for case in cases {
        check(case);
    }
}

#[test]
fn an_empty_secret_is_never_a_key_even_when_it_signed_the_request() {
    for scheme in Scheme::ALL {
        let v = signed(scheme, None, "", 1_700_000_000);
        check(
            v.clone()
                .named("only the empty key")
                .want(Err(SignatureError::NoKeyConfigured)),
        );
        check(
            v.named("the empty key and another")
                .keys(&["", "other"])
                .want(no_match(1)),
        );
    }
    // "whsec_" decodes to nothing, so it is empty too.
    let v = signed(Scheme::StandardWebhooks, None, "whsec_", 1_700_000_000);
    check(
        v.named("whsec_ alone")
            .want(Err(SignatureError::NoKeyConfigured)),
    );
}
