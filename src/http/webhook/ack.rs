//! How each platform wants a delivery acknowledged. The server answers a delivery it took
//! (accepted, filtered, duplicate, skipped) with `202` and a JSON body that says which
//! (SPEC §5); GitHub, Stripe, Standard Webhooks senders and Slack's Events API take any 2xx. Two
//! platforms count anything else as a failed delivery, so [`acknowledge`] restates those
//! answers in their terms:
//! - LINE counts every status but `200` as an error (its console's "Verify" fails, and it mails
//!   the channel's admins), so LINE deliveries get `200` with the same body.
//! - Slack slash commands and interactivity payloads (form bodies) want `200`, and post a
//!   non-empty body back to the user as the command's reply (a modal submission wants none at
//!   all), so they get `200` with an empty body; what the body would have said moves to the
//!   headers `X-Orchestrator-Status` (`accepted`, `filtered`, …) and `X-Orchestrator-Task`.
//!
//! Refusals (4xx, 5xx), dry runs and Slack's `url_verification` (already `200`) are left as
//! they are.

use warp::Reply;
use warp::http::{HeaderValue, StatusCode};

use crate::domain::signature::Scheme;

/// The header that carries a Slack form delivery's status (`accepted`, `filtered`, …).
pub(super) const STATUS_HEADER: &str = "x-orchestrator-status";
/// The header that carries the task a Slack form delivery created.
pub(super) const TASK_HEADER: &str = "x-orchestrator-task";

/// The JSON body of an answer, kept with the response so that [`acknowledge`] can restate it.
#[derive(Debug, Clone)]
pub(super) struct Answer(pub(super) serde_json::Value);

/// `response` as the platform of `scheme` wants it: see the module's rules. `form` says whether
/// the delivery's body was a form.
pub(super) fn acknowledge(
    scheme: Option<Scheme>,
    form: bool,
    response: warp::reply::Response,
) -> warp::reply::Response {
    if response.status() != StatusCode::ACCEPTED {
        return response;
    }
    match scheme {
        Some(Scheme::Line) => {
            let mut response = response;
            *response.status_mut() = StatusCode::OK;
            response
        }
        Some(Scheme::Slack) if form => {
            let answer = response.extensions().get::<Answer>().map(|a| &a.0);
            let mut empty = warp::reply().into_response();
            let headers = empty.headers_mut();
            let text = |key: &str| {
                answer
                    .and_then(|a| a.get(key))
                    .map(|v| v.as_str().map_or_else(|| v.to_string(), str::to_owned))
                    .and_then(|s| HeaderValue::from_str(&s).ok())
            };
            if let Some(v) = text("status") {
                headers.insert(STATUS_HEADER, v);
            }
            if let Some(v) = text("task") {
                headers.insert(TASK_HEADER, v);
            }
            empty
        }
        Some(
            Scheme::Slack
            | Scheme::HmacSha256
            | Scheme::Github
            | Scheme::Stripe
            | Scheme::StandardWebhooks,
        )
        | None => response,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn answer(status: StatusCode, body: serde_json::Value) -> warp::reply::Response {
        let mut r = warp::reply::with_status(warp::reply::json(&body), status).into_response();
        r.extensions_mut().insert(Answer(body));
        r
    }

    fn header(r: &warp::reply::Response, name: &str) -> Option<String> {
        r.headers()
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned)
    }

    async fn body(r: warp::reply::Response) -> String {
        use http_body_util::BodyExt;
        let bytes = r
            .into_body()
            .collect()
            .await
            .map(|c| c.to_bytes())
            .unwrap_or_default();
        String::from_utf8_lossy(&bytes).into_owned()
    }

    /// (scheme, form, answer) → (status, body, X-Orchestrator-Status, X-Orchestrator-Task).
    async fn check(
        scheme: Option<Scheme>,
        form: bool,
        status: StatusCode,
        json: serde_json::Value,
        want: (u16, &str, Option<&str>, Option<&str>),
    ) {
        let r = acknowledge(scheme, form, answer(status, json));
        let got_status = r.status().as_u16();
        let (s, t) = (header(&r, STATUS_HEADER), header(&r, TASK_HEADER));
        let got_body = body(r).await;
        assert_eq!(
            (got_status, got_body.as_str(), s.as_deref(), t.as_deref()),
            want,
            "{scheme:?} form={form}"
        );
    }

    #[tokio::test]
    async fn each_platform_gets_the_answer_it_counts_as_delivered() {
        use serde_json::json;
        let accepted = || json!({"status": "accepted", "task": 7});
        let accepted_text = r#"{"status":"accepted","task":7}"#;
        // As the server answers: GitHub, Stripe, Standard Webhooks, Slack's Events API (JSON).
        for scheme in [
            Scheme::Github,
            Scheme::Stripe,
            Scheme::StandardWebhooks,
            Scheme::HmacSha256,
            Scheme::Slack,
        ] {
            let form = scheme != Scheme::Slack;
            check(
                Some(scheme),
                form,
                StatusCode::ACCEPTED,
                accepted(),
                (202, accepted_text, None, None),
            )
            .await;
        }
        // LINE: 200, the same body.
        check(
            Some(Scheme::Line),
            false,
            StatusCode::ACCEPTED,
            accepted(),
            (200, accepted_text, None, None),
        )
        .await;
        // Slack slash commands and interactivity: 200, empty, the answer in headers.
        check(
            Some(Scheme::Slack),
            true,
            StatusCode::ACCEPTED,
            accepted(),
            (200, "", Some("accepted"), Some("7")),
        )
        .await;
        check(
            Some(Scheme::Slack),
            true,
            StatusCode::ACCEPTED,
            json!({"status": "filtered"}),
            (200, "", Some("filtered"), None),
        )
        .await;
        // Refusals and answers that are already 200 stay as they are.
        let unauthorized = json!({"error": "unauthorized"});
        for scheme in [Scheme::Line, Scheme::Slack] {
            check(
                Some(scheme),
                true,
                StatusCode::UNAUTHORIZED,
                unauthorized.clone(),
                (401, r#"{"error":"unauthorized"}"#, None, None),
            )
            .await;
        }
        check(
            Some(Scheme::Slack),
            true,
            StatusCode::OK,
            json!({"status": "verified"}),
            (200, r#"{"status":"verified"}"#, None, None),
        )
        .await;
        // No trigger at the path any more (deleted meanwhile): as answered.
        check(
            None,
            true,
            StatusCode::ACCEPTED,
            accepted(),
            (202, accepted_text, None, None),
        )
        .await;
    }
}
