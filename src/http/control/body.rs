//! Request bodies: JSON objects with only the fields a call knows, and every rejection of warp's
//! own filters turned into a [`ControlError`].

use std::convert::Infallible;

use warp::{Filter, Rejection};

use super::{BODY_LIMIT, ControlError, reply_error};

/// A rejection that carries a control error (a body [`decode_body`] refused).
#[derive(Debug)]
struct Failed(ControlError);
impl warp::reject::Reject for Failed {}

/// A JSON body of type `T`: an object (never `[]`, which serde would read field by field), with
/// only the fields `T` knows (`deny_unknown_fields` on every request type). The 400 names the
/// offending field, so `{"paylod": …}` is an error instead of a fire without a payload.
pub(super) fn json_body<T: serde::de::DeserializeOwned + Send>()
-> impl Filter<Extract = (T,), Error = Rejection> + Clone {
    warp::body::content_length_limit(BODY_LIMIT)
        .and(warp::body::bytes())
        .and_then(|bytes: warp::hyper::body::Bytes| async move {
            decode_body::<T>(&bytes).map_err(|e| warp::reject::custom(Failed(e.into())))
        })
}

/// Why a request body is not a `T`.
#[derive(Debug, thiserror::Error)]
pub enum BodyError {
    #[error("request body is not valid JSON: {0}")]
    NotJson(serde_json::Error),
    /// The body is JSON but not an object; the shape is named ("an array", "null", …).
    #[error("request body is {0}; send a JSON object with this call's fields")]
    NotAnObject(&'static str),
    /// An object whose fields do not fit the call (an unknown, missing or mistyped field).
    #[error("request body: {0}")]
    Fields(serde_json::Error),
}

pub(super) fn decode_body<T: serde::de::DeserializeOwned>(bytes: &[u8]) -> Result<T, BodyError> {
    let value: serde_json::Value = serde_json::from_slice(bytes).map_err(BodyError::NotJson)?;
    let shape = match &value {
        serde_json::Value::Object(_) => None,
        serde_json::Value::Array(_) => Some("an array"),
        serde_json::Value::Null => Some("null"),
        serde_json::Value::Bool(_) => Some("a boolean"),
        serde_json::Value::Number(_) => Some("a number"),
        serde_json::Value::String(_) => Some("a string"),
    };
    if let Some(shape) = shape {
        return Err(BodyError::NotAnObject(shape));
    }
    serde_json::from_value(value).map_err(BodyError::Fields)
}

/// Every rejection of warp's own filters, as a control error.
pub(super) async fn recover(r: Rejection) -> Result<warp::reply::Response, Infallible> {
    if let Some(Failed(e)) = r.find::<Failed>() {
        return Ok(reply_error(e));
    }
    let e = if r.is_not_found() {
        ControlError::UnknownPath
    } else if let Some(e) = r.find::<warp::filters::body::BodyDeserializeError>() {
        ControlError::BodyNotJson(e.to_string())
    } else if r.find::<warp::reject::PayloadTooLarge>().is_some() {
        ControlError::BodyTooLarge
    } else if r.find::<warp::reject::MethodNotAllowed>().is_some() {
        ControlError::MethodNotAllowed
    } else if let Some(e) = r.find::<warp::reject::InvalidQuery>() {
        ControlError::InvalidQuery(e.to_string())
    } else if r.find::<warp::reject::LengthRequired>().is_some() {
        ControlError::LengthRequired
    } else if r.find::<warp::reject::UnsupportedMediaType>().is_some() {
        ControlError::UnsupportedMediaType
    } else {
        ControlError::Unhandled(format!("{r:?}"))
    };
    Ok(reply_error(&e))
}
