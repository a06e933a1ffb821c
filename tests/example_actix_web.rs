//! The `actix_web_service` example, run for real: its embedded name server and broker, its
//! HTTP server on a free port, orders posted over plain HTTP/1.1, the per-tag counts read
//! back from `GET /stats`, then a graceful shutdown.

#[allow(dead_code)] // `http_stopped` is for the example's main (it waits for a signal).
#[path = "../examples/actix_web_service/app.rs"]
mod app;
#[path = "../examples/actix_web_service/embedded.rs"]
mod embedded;
mod support;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use support::eventually;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// One HTTP/1.1 request on a fresh connection (`Connection: close`, so the answer ends
/// where the stream does); returns the status code and the body.
async fn http(addr: SocketAddr, method: &str, target: &str, body: &str) -> (u16, String) {
    let mut stream = TcpStream::connect(addr).await.unwrap();
    let request = format!(
        "{method} {target} HTTP/1.1\r\nHost: {addr}\r\nContent-Type: text/plain\r\n\
         Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut answer = String::new();
    stream.read_to_string(&mut answer).await.unwrap();
    let (head, body) = answer
        .split_once("\r\n\r\n")
        .unwrap_or_else(|| panic!("no end of headers in {answer:?}"));
    let status = head
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("no status in {head:?}"));
    (status, body.to_owned())
}

#[test]
fn orders_posted_over_http_are_counted_per_tag_then_the_service_stops_cleanly() {
    actix_rt::System::new().block_on(async {
        let started = Instant::now();
        let cluster = embedded::EmbeddedCluster::start(app::TOPIC).await.unwrap();
        let service = app::start(&cluster.namesrv_addr(), "127.0.0.1:0".parse().unwrap())
            .await
            .unwrap();
        let addr = service.http_addr;
        assert_ne!(addr.port(), 0, "the service reports the port it bound");

        // 60 orders over 3 tags in unequal numbers (30/20/10), so counts that land on the
        // wrong tag cannot add up; `Created` ones go without `?tag=`, to use the default.
        let mut posted: BTreeMap<String, u64> = BTreeMap::new();
        for i in 0..60 {
            let tag = match i % 6 {
                0..=2 => None,
                3 | 4 => Some("Paid"),
                _ => Some("Shipped"),
            };
            let target = tag.map_or("/orders".to_owned(), |t| format!("/orders?tag={t}"));
            let (status, body) = http(addr, "POST", &target, &format!("order {i}")).await;
            assert_eq!(status, 200, "POST {target}: {body}");
            let answer: serde_json::Value = serde_json::from_str(&body).unwrap();
            let tag = tag.unwrap_or(app::DEFAULT_TAG);
            assert_eq!(answer["tag"], tag, "{body}");
            assert_eq!(answer["topic"], app::TOPIC, "{body}");
            assert!(answer["queue_id"].is_i64(), "{body}");
            assert!(!answer["unique_id"].as_str().unwrap().is_empty(), "{body}");
            *posted.entry(tag.to_owned()).or_default() += 1;
        }
        assert_eq!(posted.values().sum::<u64>(), 60);

        // A message the producer refuses is the caller's fault, with the client's reason.
        let (status, body) = http(addr, "POST", "/orders", "").await;
        assert_eq!(status, 400, "{body}");
        assert!(body.contains("empty body"), "{body}");

        eventually(
            Duration::from_secs(15),
            format!("GET /stats shows {posted:?}"),
            || {
                let posted = posted.clone();
                async move {
                    let (status, body) = http(addr, "GET", "/stats", "").await;
                    assert_eq!(status, 200, "GET /stats: {body}");
                    let counts: BTreeMap<String, u64> = serde_json::from_str(&body).unwrap();
                    // More than was posted is wrong at once: do not wait for it to pass.
                    for (tag, n) in &counts {
                        let want = posted.get(tag).copied().unwrap_or(0);
                        assert!(*n <= want, "{tag} counted {n} times, posted {want}: {body}");
                    }
                    counts == posted
                }
            },
        )
        .await;

        let stopping = Instant::now();
        let consumer_report = service.shutdown().await;
        assert_eq!(
            consumer_report,
            Ok(()),
            "the consumer committed its offsets"
        );
        assert!(
            TcpStream::connect(addr).await.is_err(),
            "the HTTP port {addr} still accepts after shutdown"
        );
        println!(
            "service shut down in {:?}; whole run {:?}",
            stopping.elapsed(),
            started.elapsed()
        );
        cluster.shutdown().await;
    });
}
