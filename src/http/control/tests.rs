//! The status and the wording of control errors, as the wire carries them.

use super::*;

/// `err` goes out as `status` with `error: text` and no details.
fn check(err: ControlError, status: u16, text: &str) {
    let api = ApiError::from(err);
    assert_eq!((api.status, api.body.error.as_str()), (status, text));
    assert!(api.body.details.is_empty());
}

#[test]
fn statuses_and_texts() {
    check(
        ControlError::Body(BodyError::NotAnObject("an array")),
        400,
        "request body is an array; send a JSON object with this call's fields",
    );
    check(
        ControlError::Name {
            field: "project",
            reason: "bad".into(),
        },
        400,
        "project: bad",
    );
    check(
        ControlError::UnknownKind("pod".into()),
        400,
        &format!(
            "unknown kind \"pod\": use one of {}",
            Kind::ALL.map(Kind::lower).join(", ")
        ),
    );
    check(
        ControlError::NoSuchKey {
            store: "hooks".into(),
            key: "k1".into(),
        },
        400,
        "secretstore/hooks has no key \"k1\"",
    );
    check(
        ControlError::NotFound {
            kind: Kind::Trigger,
            name: "nightly".into(),
            project: "default".into(),
            suggestion: Some("nighty".into()),
        },
        404,
        "trigger/nightly not found in project \"default\" (did you mean \"nighty\"?)",
    );
    check(
        ControlError::NotFound {
            kind: Kind::Trigger,
            name: "x".into(),
            project: "p".into(),
            suggestion: None,
        },
        404,
        "trigger/x not found in project \"p\"",
    );
    check(
        ControlError::NoRunningActor("webhook".into()),
        404,
        "no running actor is named \"webhook\" (orchestrator actors lists them)",
    );
    assert!(
        ApiError::from(ControlError::NoRunningActor("trigger/t".into()))
            .body
            .error
            .ends_with("shows the next wakes)")
    );
    check(
        ControlError::UnknownActorPost,
        404,
        "unknown actor request: use POST /v1/actors/{name}/kill",
    );
    check(
        ControlError::MethodNotAllowed,
        405,
        "method not allowed on this path",
    );
    check(
        ControlError::BodyTooLarge,
        413,
        "request body is larger than 64 MiB",
    );
    check(
        ControlError::ActorDown(CallError::Gone("tasks".into())),
        503,
        "actor tasks is not running; retry in a moment",
    );
    check(
        ControlError::ActorCall(CallError::Gone("secret-store".into())),
        503,
        "actor secret-store is not running; the change may not have been applied, check with `get`",
    );
    check(
        ControlError::Answered(ApiError::conflict("busy")),
        409,
        "busy",
    );
}

#[test]
fn invalid_manifests_carry_their_problems() {
    let problems = vec![Diagnostic::new("spec", "wrong")];
    let api = ApiError::from(ControlError::Invalid {
        what: "apply",
        problems: problems.clone(),
    });
    assert_eq!(api, ApiError::invalid("apply", problems));
    assert_eq!(api.status, 422);
}

#[test]
fn actor_answers_get_their_statuses_here() {
    use crate::domain::snapshot::ResourceKey;
    use crate::domain::workflow::TaskState;
    let key = ResourceKey::new("p", Kind::Trigger, "t");
    check(
        SecretStoreError::NotFound { key: key.clone() }.into(),
        404,
        "trigger/t not found in project p",
    );
    check(
        SecretStoreError::NotASecretStore(key).into(),
        400,
        "trigger/t is not a SecretStore",
    );
    check(
        TaskError::NothingToCancel {
            id: 7,
            state: TaskState::Cancelled,
        }
        .into(),
        409,
        "task 7 already cancelled; there is nothing to cancel",
    );
    check(
        TaskError::NoWorkspaceRoot {
            workspace: "w".into(),
            root: "/nope".into(),
        }
        .into(),
        422,
        "workspace \"w\": root_path /nope does not exist or is not a directory; create it or fix the Workspace",
    );
    check(
        TaskError::ShuttingDown.into(),
        503,
        "the daemon is shutting down",
    );
    check(
        FireError::Tasks(CallError::Gone("tasks".into())).into(),
        503,
        "actor tasks is not running",
    );
    check(
        FireError::Task(TaskError::NotFound(3)).into(),
        404,
        "task 3 not found",
    );
    check(
        RetentionError::NotFound(4).into(),
        404,
        "task 4 not found (orchestrator task list shows the tasks)",
    );
    check(
        RetentionError::NotFinished {
            id: 5,
            state: TaskState::Pending,
        }
        .into(),
        409,
        "task 5 is pending: only a finished task can be deleted; cancel it first (orchestrator task cancel 5)",
    );
    check(
        RetentionError::Newest(6).into(),
        409,
        "task 6 is the newest task and is kept so that its id is never given to another task; it can be deleted once a newer task exists",
    );
    check(
        ControlError::PruneAge(0),
        400,
        "olderThanSeconds 0 is out of range: use 1 to 3153600000 seconds (1s to 36500d)",
    );
}

#[test]
fn refusals_of_the_store_carry_their_problems() {
    let problems = vec![Diagnostic::new("spec", "wrong")];
    let invalid = ApiError::from(ControlError::from(SecretStoreError::Invalid {
        what: "change",
        problems: problems.clone(),
    }));
    assert_eq!(invalid, ApiError::invalid("change", problems.clone()));
    let referenced = ApiError::from(ControlError::from(SecretStoreError::StillReferenced(
        problems.clone(),
    )));
    assert_eq!(referenced.status, 409);
    assert_eq!(
        referenced.body.error,
        "delete refused, nothing was changed: still referenced (1 reference)"
    );
    assert_eq!(referenced.body.details, problems);
}

#[test]
fn bodies_must_be_objects_of_known_fields() {
    #[derive(Debug, serde::Deserialize)]
    #[serde(deny_unknown_fields)]
    #[allow(dead_code)]
    struct Req {
        name: String,
    }
    let err = |body: &str| {
        decode_body::<Req>(body.as_bytes())
            .map(|_| ())
            .map_err(|e| e.to_string())
    };
    assert!(err(r#"{"name":"x"}"#).is_ok());
    assert_eq!(
        err("null"),
        Err("request body is null; send a JSON object with this call's fields".into())
    );
    assert!(err("{").is_err_and(|e| e.starts_with("request body is not valid JSON: ")));
    assert!(err(r#"{"nme":"x"}"#).is_err_and(|e| e.starts_with("request body: unknown field")));
}
