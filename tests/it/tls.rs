//! TLS: the binary talks https through rustls with the ring provider it installs at start-up.
//! (The simulator is plain http; this only checks that an https base_url reaches a TLS
//! handshake and fails cleanly when the peer does not speak TLS.)

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use tokio::io::AsyncWriteExt;

use crate::helpers::{Setup, config_text, run_cli};

#[tokio::test]
async fn an_https_base_url_reaches_a_tls_handshake_and_a_non_tls_peer_is_an_error_not_a_panic() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let accepted = Arc::new(AtomicUsize::new(0));
    let count = accepted.clone();
    let server = tokio::spawn(async move {
        // Answers the TLS ClientHello in plain HTTP, as a misconfigured port would.
        while let Ok((mut sock, _)) = listener.accept().await {
            count.fetch_add(1, Ordering::SeqCst);
            let _ = sock
                .write_all(b"HTTP/1.1 400 Bad Request\r\ncontent-length: 0\r\n\r\n")
                .await;
        }
    });
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("config.toml");
    std::fs::write(
        &config,
        config_text(
            &format!("https://127.0.0.1:{port}/"),
            &dir.path().join("store.db"),
            &Setup::tickets(1),
        ),
    )
    .unwrap();
    let (code, out, err) = run_cli(&config, &["run", "--once"]).await;
    server.abort();
    assert!(!err.contains("panicked"), "{err}");
    assert_eq!(code, 1, "stdout: {out}\nstderr: {err}");
    assert!(
        accepted.load(Ordering::SeqCst) >= 1,
        "the client never connected: {err}"
    );
    assert!(
        out.contains("sim-1") || err.contains("sim-1"),
        "{out}\n{err}"
    );
}
