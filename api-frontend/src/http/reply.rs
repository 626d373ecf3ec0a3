//! HTTP responses: errors as JSON with the gRPC code name (the same words a gRPC client
//! sees), and event streams.

use std::convert::Infallible;

use bytes::Bytes;
use http_body::Frame;
use http_body_util::{Full, StreamBody};
use tokio::sync::mpsc;
use tokio_stream::StreamExt;
use tokio_stream::wrappers::ReceiverStream;
use tonic::body::Body;
use tonic::codegen::http::{HeaderValue, Response, StatusCode, header};
use tonic::{Code, Status};

use super::route::RouteError;
use crate::audit::code_name;

/// The HTTP status for a gRPC code, as Google's API mapping has it.
pub fn http_status(code: Code) -> StatusCode {
    match code {
        Code::Ok => StatusCode::OK,
        Code::InvalidArgument | Code::FailedPrecondition | Code::OutOfRange => {
            StatusCode::BAD_REQUEST
        }
        Code::Unauthenticated => StatusCode::UNAUTHORIZED,
        Code::PermissionDenied => StatusCode::FORBIDDEN,
        Code::NotFound => StatusCode::NOT_FOUND,
        Code::AlreadyExists | Code::Aborted => StatusCode::CONFLICT,
        Code::ResourceExhausted => StatusCode::TOO_MANY_REQUESTS,
        Code::Unimplemented => StatusCode::NOT_IMPLEMENTED,
        Code::Unavailable => StatusCode::SERVICE_UNAVAILABLE,
        Code::DeadlineExceeded => StatusCode::GATEWAY_TIMEOUT,
        Code::Cancelled | Code::Unknown | Code::Internal | Code::DataLoss => {
            StatusCode::INTERNAL_SERVER_ERROR
        }
    }
}

/// `{"code": "NOT_FOUND", "message": "job x not found"}`.
pub fn error_json(code: Code, message: &str) -> String {
    serde_json::json!({ "code": code_name(code), "message": message }).to_string()
}

pub fn error(status: &Status) -> Response<Body> {
    json(
        http_status(status.code()),
        error_json(status.code(), status.message()),
    )
}

pub fn route_error(e: &RouteError) -> Response<Body> {
    let (status, code) = match e {
        RouteError::NotFound => (StatusCode::NOT_FOUND, Code::NotFound),
        RouteError::MethodNotAllowed(_) => (StatusCode::METHOD_NOT_ALLOWED, Code::Unimplemented),
        RouteError::BadRequest(_) => (StatusCode::BAD_REQUEST, Code::InvalidArgument),
    };
    let mut resp = json(status, error_json(code, &e.to_string()));
    if matches!(e, RouteError::MethodNotAllowed(_)) {
        resp.headers_mut()
            .insert(header::ALLOW, HeaderValue::from_static("GET"));
    }
    resp
}

fn json(status: StatusCode, body: String) -> Response<Body> {
    let mut resp = Response::new(Body::new(Full::new(Bytes::from(body))));
    *resp.status_mut() = status;
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    resp
}

/// An event stream fed by `rx`; it ends when the sender is dropped.
pub fn event_stream(rx: mpsc::Receiver<Bytes>) -> Response<Body> {
    let frames = ReceiverStream::new(rx).map(|b| Ok::<_, Infallible>(Frame::data(b)));
    let mut resp = Response::new(Body::new(StreamBody::new(frames)));
    let h = resp.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/event-stream"),
    );
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    // Reverse proxies (nginx) must pass events on as they come.
    h.insert("x-accel-buffering", HeaderValue::from_static("no"));
    resp
}

#[cfg(test)]
mod tests {
    use super::*;
    use http_body_util::BodyExt;

    #[test]
    fn codes_map_to_statuses() {
        assert_eq!(http_status(Code::PermissionDenied), StatusCode::FORBIDDEN);
        assert_eq!(http_status(Code::NotFound), StatusCode::NOT_FOUND);
        assert_eq!(http_status(Code::InvalidArgument), StatusCode::BAD_REQUEST);
        assert_eq!(
            http_status(Code::Unavailable),
            StatusCode::SERVICE_UNAVAILABLE
        );
        assert_eq!(http_status(Code::Unauthenticated), StatusCode::UNAUTHORIZED);
    }

    #[tokio::test]
    async fn error_bodies_are_json() {
        let resp = error(&Status::not_found("job 0b7c not found"));
        assert_eq!(resp.status(), StatusCode::NOT_FOUND);
        assert_eq!(resp.headers()[header::CONTENT_TYPE], "application/json");
        let body = resp.into_body().collect().await.unwrap().to_bytes();
        let v: serde_json::Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(v["code"], "NOT_FOUND");
        assert_eq!(v["message"], "job 0b7c not found");
        let resp = route_error(&RouteError::MethodNotAllowed("PUT".into()));
        assert_eq!(resp.status(), StatusCode::METHOD_NOT_ALLOWED);
        assert_eq!(resp.headers()[header::ALLOW], "GET");
    }

    #[tokio::test]
    async fn streams_carry_what_is_sent() {
        let (tx, rx) = mpsc::channel(4);
        let resp = event_stream(rx);
        assert_eq!(resp.headers()[header::CONTENT_TYPE], "text/event-stream");
        tx.send(Bytes::from_static(b"event: a\ndata: 1\n\n"))
            .await
            .unwrap();
        tx.send(Bytes::from_static(b": x\n\n")).await.unwrap();
        drop(tx);
        let body = resp.into_body().collect().await.unwrap().to_bytes();
        assert_eq!(&body[..], b"event: a\ndata: 1\n\n: x\n\n");
    }
}
