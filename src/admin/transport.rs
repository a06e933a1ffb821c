//! The admin client's transport: one request to one peer and its answer, and the
//! name-server fan-out every cluster query goes through.
//!
//! This file owns framing a request, checking the response code and decoding the answer.
//! It must never know what a request means (that is the other files' job) and never panic
//! on what a peer sends back.

use bytes::Bytes;
use serde::de::DeserializeOwned;
use serde::Serialize;

use super::{AdminClient, AdminError};
use crate::actors::remote_link::{self, LinkConfig, RemoteLink};
use crate::protocol::{Frame, RequestCode, ResponseCode};

impl AdminClient {
    fn link(&mut self, addr: &str) -> actix::Addr<RemoteLink> {
        self.links
            .entry(addr.to_owned())
            .or_insert_with(|| RemoteLink::start(addr, LinkConfig::default(), None))
            .clone()
    }

    /// Sends a request to `addr` and returns the answer, whatever its response code.
    ///
    /// The raw form every other method is built on; use it for requests the client has no
    /// method for.
    pub async fn call<H: Serialize>(
        &mut self,
        addr: &str,
        code: RequestCode,
        header: &H,
        body: Bytes,
    ) -> Result<Frame, AdminError> {
        let frame = Frame::request(code, 0, header, body).map_err(|e| AdminError::Encode {
            peer: addr.to_owned(),
            reason: e.to_string(),
        })?;
        let link = self.link(addr);
        let answer = remote_link::call(&link, addr, frame, self.timeout).await?;
        Ok(answer)
    }

    /// Like [`AdminClient::call`], but an answer other than success is an error.
    pub async fn call_ok<H: Serialize>(
        &mut self,
        addr: &str,
        code: RequestCode,
        header: &H,
        body: Bytes,
    ) -> Result<Frame, AdminError> {
        let f = self.call(addr, code, header, body).await?;
        match f.response_code() {
            Some(ResponseCode::Success) => Ok(f),
            other => Err(AdminError::Refused {
                peer: addr.to_owned(),
                code: other
                    .map(|c| c.to_string())
                    .unwrap_or_else(|| f.code.to_string()),
                remark: f.remark.clone().unwrap_or_default(),
            }),
        }
    }

    /// A successful answer's body, decoded as `T`.
    pub(super) async fn call_for_body<H: Serialize, T: DeserializeOwned>(
        &mut self,
        addr: &str,
        code: RequestCode,
        header: &H,
    ) -> Result<T, AdminError> {
        let f = self.call_ok(addr, code, header, Bytes::new()).await?;
        decode_body(addr, &f)
    }

    /// Asks each name server in turn until one answers. A refusal is final (every name
    /// server would say the same); an unreachable one passes the question on.
    pub(super) async fn namesrv<H: Serialize, T: DeserializeOwned>(
        &mut self,
        code: RequestCode,
        header: &H,
    ) -> Result<T, AdminError> {
        if self.namesrvs.is_empty() {
            return Err(AdminError::NoNamesrv);
        }
        let mut errors = Vec::new();
        for addr in self.namesrvs.clone() {
            match self.call_for_body(&addr, code, header).await {
                Ok(body) => return Ok(body),
                Err(e @ (AdminError::Refused { .. } | AdminError::BadAnswer { .. })) => {
                    return Err(e)
                }
                Err(e) => errors.push(e.to_string()),
            }
        }
        Err(AdminError::NamesrvUnreachable(errors.join("; ")))
    }
}

/// `f`'s body decoded as `T`, or an error naming `addr`.
pub(super) fn decode_body<T: DeserializeOwned>(addr: &str, f: &Frame) -> Result<T, AdminError> {
    f.decode_body().map_err(|e| AdminError::BadAnswer {
        peer: addr.to_owned(),
        reason: e.to_string(),
    })
}

/// `f`'s header decoded as `T`, or an error naming `addr`.
pub(super) fn decode_header<T: DeserializeOwned>(addr: &str, f: &Frame) -> Result<T, AdminError> {
    f.decode_header().map_err(|e| AdminError::BadAnswer {
        peer: addr.to_owned(),
        reason: e.to_string(),
    })
}
