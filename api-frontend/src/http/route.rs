//! The HTTP routes served next to gRPC, and the permission each needs: the same as the RPC
//! that reads the same thing, so a role may read over SSE exactly what it may read over
//! gRPC.

use tonic::codegen::http::{HeaderMap, Method};

use crate::rbac::Rpc;

/// Every HTTP route lives under this prefix; other paths are gRPC's.
const PREFIX: &str = "/v1/";

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Route {
    /// `GET /v1/jobs/{id}/logs[?follow=true]`
    JobLogs { job: String, follow: bool },
    /// `GET /v1/jobs/{id}/metrics`
    JobMetrics { job: String },
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RouteError {
    #[error(
        "no such endpoint; the endpoints are GET /v1/jobs/{{id}}/logs[?follow=true] and GET /v1/jobs/{{id}}/metrics"
    )]
    NotFound,
    #[error("method {0} not allowed; this endpoint answers GET")]
    MethodNotAllowed(String),
    #[error("{0}")]
    BadRequest(String),
}

impl Route {
    /// The RPC whose permission (and audit name) this route shares.
    pub fn rpc(&self) -> Rpc {
        match self {
            Route::JobLogs { .. } => Rpc::GetJobLogs,
            Route::JobMetrics { .. } => Rpc::StreamJobMetrics,
        }
    }
}

/// Whether a request path belongs to the HTTP routes rather than to gRPC.
pub fn is_http_path(path: &str) -> bool {
    path.starts_with(PREFIX) || path == "/v1"
}

pub fn parse(method: &Method, path: &str, query: Option<&str>) -> Result<Route, RouteError> {
    let rest = path.strip_prefix(PREFIX).ok_or(RouteError::NotFound)?;
    let parts: Vec<&str> = rest.split('/').collect();
    let route = match parts.as_slice() {
        ["jobs", job, "logs"] if !job.is_empty() => Route::JobLogs {
            job: (*job).to_owned(),
            follow: follow_flag(query)?,
        },
        ["jobs", job, "metrics"] if !job.is_empty() => {
            no_query(query)?;
            Route::JobMetrics {
                job: (*job).to_owned(),
            }
        }
        _ => return Err(RouteError::NotFound),
    };
    if method != Method::GET {
        return Err(RouteError::MethodNotAllowed(
            method.as_str().chars().take(20).collect(),
        ));
    }
    Ok(route)
}

fn follow_flag(query: Option<&str>) -> Result<bool, RouteError> {
    let mut follow = false;
    for pair in query.unwrap_or("").split('&').filter(|p| !p.is_empty()) {
        let (key, value) = pair.split_once('=').unwrap_or((pair, "true"));
        if key != "follow" {
            return Err(unknown_parameter(key, "follow"));
        }
        follow = match value {
            "true" | "1" | "yes" | "" => true,
            "false" | "0" | "no" => false,
            other => {
                let shown: String = other.chars().take(20).collect();
                return Err(RouteError::BadRequest(format!(
                    "follow={shown:?}: expected true or false"
                )));
            }
        };
    }
    Ok(follow)
}

fn no_query(query: Option<&str>) -> Result<(), RouteError> {
    match query.unwrap_or("").split('&').find(|p| !p.is_empty()) {
        None => Ok(()),
        Some(pair) => Err(unknown_parameter(
            pair.split('=').next().unwrap_or(pair),
            "no",
        )),
    }
}

fn unknown_parameter(key: &str, known: &str) -> RouteError {
    let shown: String = key.chars().take(40).collect();
    RouteError::BadRequest(format!(
        "unknown query parameter {shown:?}; this endpoint takes {known} parameters"
    ))
}

/// The sequence number a reconnecting `EventSource` last saw (`Last-Event-ID`), so the
/// stream resumes after it.
pub fn last_event_id(headers: &HeaderMap) -> Result<Option<u64>, RouteError> {
    let Some(v) = headers.get("last-event-id") else {
        return Ok(None);
    };
    let text = v.to_str().unwrap_or("").trim();
    if text.is_empty() {
        return Ok(None);
    }
    text.parse().map(Some).map_err(|_| {
        let shown: String = text.chars().take(40).collect();
        RouteError::BadRequest(format!(
            "Last-Event-ID {shown:?} is not a sequence number from this stream"
        ))
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rbac::Role;

    fn get(path: &str, query: Option<&str>) -> Result<Route, RouteError> {
        parse(&Method::GET, path, query)
    }

    #[test]
    fn routes() {
        assert_eq!(
            get("/v1/jobs/0b7c/logs", Some("follow=true")),
            Ok(Route::JobLogs {
                job: "0b7c".into(),
                follow: true
            })
        );
        assert_eq!(
            get("/v1/jobs/0b7c/logs", None),
            Ok(Route::JobLogs {
                job: "0b7c".into(),
                follow: false
            })
        );
        assert_eq!(
            get("/v1/jobs/0b7c/logs", Some("follow")).unwrap(),
            Route::JobLogs {
                job: "0b7c".into(),
                follow: true
            }
        );
        assert_eq!(
            get("/v1/jobs/x/metrics", None),
            Ok(Route::JobMetrics { job: "x".into() })
        );
    }

    #[test]
    fn refusals() {
        for path in [
            "/v1/",
            "/v1/jobs",
            "/v1/jobs//logs",
            "/v1/jobs/x/logs/",
            "/v1/jobs/x/stdout",
            "/v1/jobs/x/y/logs",
            "/joblet.JobService/GetJobLogs",
        ] {
            assert_eq!(get(path, None), Err(RouteError::NotFound), "{path}");
        }
        assert_eq!(
            parse(&Method::POST, "/v1/jobs/x/logs", None),
            Err(RouteError::MethodNotAllowed("POST".into()))
        );
        for q in ["follow=maybe", "tail=10", "follow=true&x=1"] {
            assert!(
                matches!(
                    get("/v1/jobs/x/logs", Some(q)),
                    Err(RouteError::BadRequest(_))
                ),
                "{q}"
            );
        }
        assert!(matches!(
            get("/v1/jobs/x/metrics", Some("follow=true")),
            Err(RouteError::BadRequest(_))
        ));
    }

    #[test]
    fn which_paths_are_http() {
        assert!(is_http_path("/v1/jobs/x/logs"));
        assert!(is_http_path("/v1"));
        assert!(!is_http_path("/v10/x"));
        assert!(!is_http_path("/joblet.JobService/RunJob"));
        assert!(!is_http_path("/"));
    }

    #[test]
    fn the_routes_need_read_permission_only() {
        for route in [
            Route::JobLogs {
                job: "x".into(),
                follow: true,
            },
            Route::JobMetrics { job: "x".into() },
        ] {
            let rpc = route.rpc();
            assert!(rpc.allowed_for(Some(Role::Viewer)), "{route:?}");
            assert!(rpc.allowed_for(Some(Role::Admin)), "{route:?}");
            assert!(!rpc.allowed_for(None), "{route:?}");
            assert!(rpc.operation().is_read_only());
        }
    }

    #[test]
    fn last_event_ids() {
        let mut h = HeaderMap::new();
        assert_eq!(last_event_id(&h), Ok(None));
        h.insert("last-event-id", "41".parse().unwrap());
        assert_eq!(last_event_id(&h), Ok(Some(41)));
        h.insert("last-event-id", "abc".parse().unwrap());
        assert!(last_event_id(&h).is_err());
    }
}
