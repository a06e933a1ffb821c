//! RemoteLink against a scripted peer on 127.0.0.1: answers are matched to requests by
//! opaque whatever their order; a request nobody answers fails alone with a timeout while
//! the link keeps serving others, at its own deadline even behind a longer one; a peer that
//! goes away fails what is in flight.

use std::time::Duration;

use actimq::internals::actors::remote_link::{self, LinkConfig, LinkError, RemoteLink};
use actimq::internals::protocol::{
    Frame, FrameCodec, RequestCode, ResponseCode, DEFAULT_MAX_FRAME_SIZE,
};
use bytes::Bytes;
use futures_util::{SinkExt, StreamExt};
use tokio::net::TcpListener;
use tokio_util::codec::Framed;

fn request(body: &'static str) -> Frame {
    Frame::request(
        RequestCode::SendMessage,
        0,
        &(),
        Bytes::from_static(body.as_bytes()),
    )
    .unwrap()
}

fn answer(to: &Frame) -> Frame {
    Frame::response(to.opaque, ResponseCode::Success, &(), to.body.clone()).unwrap()
}

/// Runs `peer` on the first connection to a fresh loopback port and returns the address.
async fn scripted_peer<F, Fut>(peer: F) -> String
where
    F: FnOnce(Framed<tokio::net::TcpStream, FrameCodec>) -> Fut + 'static,
    Fut: std::future::Future<Output = ()> + 'static,
{
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    actix_rt::spawn(async move {
        if let Ok((socket, _)) = listener.accept().await {
            peer(Framed::new(socket, FrameCodec::new(DEFAULT_MAX_FRAME_SIZE))).await;
        }
    });
    addr
}

#[test]
fn answers_out_of_order_reach_their_callers() {
    actix_rt::System::new().block_on(async {
        let addr = scripted_peer(|mut conn| async move {
            let mut got = Vec::new();
            while got.len() < 3 {
                match conn.next().await {
                    Some(Ok(f)) => got.push(f),
                    _ => return,
                }
            }
            for f in got.iter().rev() {
                conn.send(answer(f)).await.unwrap();
            }
            // Keep the socket open until the test is done.
            let _ = conn.next().await;
        })
        .await;
        let link = RemoteLink::start(addr.clone(), LinkConfig::default(), None);
        let timeout = Duration::from_secs(5);
        let (a, b, c) = tokio::join!(
            remote_link::call(&link, &addr, request("one"), timeout),
            remote_link::call(&link, &addr, request("two"), timeout),
            remote_link::call(&link, &addr, request("three"), timeout),
        );
        assert_eq!(&a.unwrap().body[..], b"one");
        assert_eq!(&b.unwrap().body[..], b"two");
        assert_eq!(&c.unwrap().body[..], b"three");
    });
}

#[test]
fn an_unanswered_request_times_out_alone() {
    actix_rt::System::new().block_on(async {
        // Answers everything except the body "ignore me".
        let addr = scripted_peer(|mut conn| async move {
            while let Some(Ok(f)) = conn.next().await {
                if &f.body[..] != b"ignore me" {
                    conn.send(answer(&f)).await.unwrap();
                }
            }
        })
        .await;
        let link = RemoteLink::start(addr.clone(), LinkConfig::default(), None);
        let ignored = remote_link::call(
            &link,
            &addr,
            request("ignore me"),
            Duration::from_millis(300),
        );
        let answered = remote_link::call(&link, &addr, request("hello"), Duration::from_secs(5));
        // A link that never expired requests would hang here: bound the wait.
        let (ignored, answered) = tokio::time::timeout(Duration::from_secs(10), async {
            tokio::join!(ignored, answered)
        })
        .await
        .expect("the unanswered request was never failed");
        match ignored {
            Err(LinkError::Timeout { timeout_ms, .. }) => assert_eq!(timeout_ms, 300),
            other => panic!("expected a timeout, got {other:?}"),
        }
        assert_eq!(&answered.unwrap().body[..], b"hello");
        // The link still works after the timeout.
        let again = remote_link::call(&link, &addr, request("again"), Duration::from_secs(5))
            .await
            .unwrap();
        assert_eq!(&again.body[..], b"again");
    });
}

#[test]
fn a_short_deadline_behind_a_long_one_still_fails_on_time() {
    actix_rt::System::new().block_on(async {
        // Answers nothing, and keeps the connection open.
        let addr =
            scripted_peer(|mut conn| async move { while let Some(Ok(_)) = conn.next().await {} })
                .await;
        let link = RemoteLink::start(addr.clone(), LinkConfig::default(), None);
        // The link's one timer is set for the first request's deadline, a minute away; the
        // second request's earlier deadline must move it.
        let long = {
            let (link, addr) = (link.clone(), addr.clone());
            actix_rt::spawn(async move {
                remote_link::call(&link, &addr, request("long"), Duration::from_secs(60)).await
            })
        };
        tokio::time::sleep(Duration::from_millis(50)).await;
        let short = remote_link::call(&link, &addr, request("short"), Duration::from_millis(200));
        match tokio::time::timeout(Duration::from_secs(20), short).await {
            Ok(Err(LinkError::Timeout { timeout_ms, .. })) => assert_eq!(timeout_ms, 200),
            Ok(other) => panic!("expected a timeout, got {other:?}"),
            Err(_) => panic!("the short request waited for the long one's deadline"),
        }
        assert!(!long.is_finished(), "the long request is still waiting");
        long.abort();
    });
}

#[test]
fn a_peer_that_goes_away_fails_requests_in_flight() {
    actix_rt::System::new().block_on(async {
        // Reads one request, then closes the connection without answering.
        let addr = scripted_peer(|mut conn| async move {
            let _ = conn.next().await;
        })
        .await;
        let link = RemoteLink::start(addr.clone(), LinkConfig::default(), None);
        let outcome =
            remote_link::call(&link, &addr, request("lost"), Duration::from_secs(10)).await;
        assert!(
            matches!(outcome, Err(LinkError::Lost { .. })),
            "expected a lost connection, got {outcome:?}"
        );
    });
}
