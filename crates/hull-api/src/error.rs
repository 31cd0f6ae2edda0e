//! Errors as docker's API returns them: a status code and `{"message": "..."}`, the
//! status chosen the way dockerd's `errdefs` classes map (not found 404, conflict 409,
//! invalid parameter 400, not modified 304, the rest 500).

use hull_engine::record;
use hyper::StatusCode;

use crate::http::{self, Resp};

#[derive(Debug)]
pub(crate) struct ApiError {
    pub status: StatusCode,
    pub message: String,
}

impl ApiError {
    pub(crate) fn new(status: StatusCode, message: impl Into<String>) -> ApiError {
        ApiError {
            status,
            message: message.into(),
        }
    }
    pub(crate) fn bad(message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::BAD_REQUEST, message)
    }
    pub(crate) fn not_found(message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::NOT_FOUND, message)
    }
    pub(crate) fn conflict(message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::CONFLICT, message)
    }
    pub(crate) fn internal(message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, message)
    }

    pub(crate) fn into_response(self) -> Resp {
        if self.status == StatusCode::NOT_MODIFIED {
            return http::empty(self.status);
        }
        http::json(self.status, &serde_json::json!({ "message": self.message }))
    }
}

/// The error and its causes on one line, as hull's CLI prints them.
pub(crate) fn chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut cur = e.source();
    while let Some(c) = cur {
        let m = c.to_string();
        if !s.contains(&m) {
            s.push_str(": ");
            s.push_str(&m);
        }
        cur = c.source();
    }
    s
}

impl From<record::Error> for ApiError {
    fn from(e: record::Error) -> ApiError {
        let status = match &e {
            record::Error::NotFound(_) => StatusCode::NOT_FOUND,
            record::Error::NameInUse(..) => StatusCode::CONFLICT,
            record::Error::BadName(_) | record::Error::Ambiguous(_) => StatusCode::BAD_REQUEST,
            _ => StatusCode::INTERNAL_SERVER_ERROR,
        };
        let message = match &e {
            // docker's words: clients (compose) match on them.
            record::Error::NotFound(k) => format!("No such container: {k}"),
            record::Error::NameInUse(n, id) => format!(
                "Conflict. The container name \"/{n}\" is already in use by container \"{id}\". \
                 You have to remove (or rename) that container to be able to reuse that name."
            ),
            _ => chain(&e),
        };
        ApiError::new(status, message)
    }
}

impl From<hull_engine::Error> for ApiError {
    fn from(e: hull_engine::Error) -> ApiError {
        use hull_engine::net_plug::Error as P;
        use hull_engine::Error as E;
        let e = match e {
            E::Record(r) => return r.into(),
            E::NoImage(i) => return ApiError::not_found(format!("No such image: {i}")),
            E::Net(hull_engine::net::Error::NoNetwork(n)) => {
                return ApiError::not_found(format!("network {n} not found"))
            }
            E::Cp(hull_engine::cp::Error::NotFound(p)) => {
                return ApiError::not_found(format!("Could not find the file {p}"))
            }
            other => other,
        };
        let status = match &e {
            E::Running(_) | E::NotRunning(_) | E::Paused(_) | E::Dead(_) => StatusCode::CONFLICT,
            E::AlreadyStarted(_) => StatusCode::NOT_MODIFIED,
            E::Opts(_) | E::BindSource(_) | E::Spec(_) | E::Cp(_) => StatusCode::BAD_REQUEST,
            // A policy the container cannot have (`update --restart` of an AutoRemove one).
            E::Policy(p) if !matches!(p, hull_engine::policy::Error::Write { .. }) => {
                StatusCode::BAD_REQUEST
            }
            E::Net(hull_engine::net::Error::InUse(..)) => StatusCode::CONFLICT,
            E::Plug(P::AlreadyOn(..) | P::NotOn(..)) => StatusCode::FORBIDDEN,
            E::Plug(P::Shared(..) | P::Special(_)) => StatusCode::BAD_REQUEST,
            E::Net(hull_engine::net::Error::Predefined(_)) => StatusCode::FORBIDDEN,
            E::ExecNotFound(_) | E::ExecNotExecutable(_) => StatusCode::BAD_REQUEST,
            _ => StatusCode::INTERNAL_SERVER_ERROR,
        };
        ApiError::new(status, chain(&e))
    }
}

impl From<hull_engine::shim::Error> for ApiError {
    fn from(e: hull_engine::shim::Error) -> ApiError {
        ApiError::internal(chain(&e))
    }
}

impl From<hull_engine::net::Error> for ApiError {
    fn from(e: hull_engine::net::Error) -> ApiError {
        hull_engine::Error::Net(e).into()
    }
}
