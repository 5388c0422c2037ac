//! Webhook deliveries: a notification batch for every ticket created or changing state, sent
//! as Tampuuri's webhook add-on is assumed to send it (`tampuuri-api.md`: a `Notifications`
//! collection, `Attempts`, at most 5 tries), optionally with HTTP Basic and an HMAC-SHA256
//! digest of the raw body. The simulator signs with its own code, never huoltosync's: a bug in
//! the listener's digest check cannot hide behind the same bug here.

use std::time::Duration;

use hmac::{Hmac, Mac};
use rand::Rng;
use serde_json::{Value, json};
use sha2::Sha256;

use super::state::{Sim, SimTicket};

/// Where webhook notifications are delivered, and how.
#[derive(Debug, Clone, Default)]
pub struct WebhookTarget {
    pub url: String,
    /// Signs the body with HMAC-SHA256 (`sha256=<hex>`), as the listener expects by default.
    pub secret: Option<String>,
    /// The digest header (default `X-Huoltosync-Digest`).
    pub header: String,
    /// HTTP Basic credentials.
    pub basic: Option<(String, String)>,
    /// The share of deliveries dropped entirely (never sent).
    pub drop_rate: f64,
}

impl Sim {
    /// Changes where (and whether) webhook notifications are delivered.
    pub fn set_webhook(&self, target: Option<WebhookTarget>) {
        self.lock().webhook = target;
    }

    /// Webhook deliveries `(made, dropped on purpose)`.
    pub fn webhook_counts(&self) -> (u64, u64) {
        let inner = self.lock();
        (inner.webhooks_delivered, inner.webhooks_dropped)
    }

    /// Sends one notification batch to the webhook target, retrying up to 5 attempts, unless
    /// the drop rate says to lose it.
    pub(super) fn deliver(&self, note: Value) {
        let (target, dropped) = {
            let mut inner = self.lock();
            let Some(target) = inner.webhook.clone() else {
                return;
            };
            let dropped =
                target.drop_rate > 0.0 && inner.rng.random_bool(target.drop_rate.min(1.0));
            if dropped {
                inner.webhooks_dropped += 1;
            }
            (target, dropped)
        };
        if dropped {
            return;
        }
        let sim = self.clone();
        tokio::spawn(async move {
            install_tls_provider();
            let client = reqwest::Client::new();
            for attempt in 1..=5u32 {
                let body =
                    json!({ "Notifications": [note.clone()], "Attempts": attempt }).to_string();
                let mut req = client
                    .post(&target.url)
                    .header("content-type", "application/json");
                if let Some(secret) = &target.secret {
                    req = req.header(
                        target.header.as_str(),
                        digest(secret.as_bytes(), body.as_bytes()),
                    );
                }
                if let Some((u, p)) = &target.basic {
                    req = req.basic_auth(u, Some(p));
                }
                match req.body(body).timeout(Duration::from_secs(10)).send().await {
                    Ok(r) if r.status().is_success() => {
                        sim.lock().webhooks_delivered += 1;
                        return;
                    }
                    _ => tokio::time::sleep(Duration::from_millis(100 << attempt)).await,
                }
            }
        });
    }
}

/// A notification about `t` as Tampuuri's webhook add-on sends it.
pub(super) fn notification(action: &str, account: &str, t: &SimTicket) -> Value {
    json!({
        "Action": action,
        "Account": account,
        "ReferenceId": t.id,
        "ReferenceSecondaryId": null,
        "ReferenceData": null,
        "ReferenceJson": json!({ "TyonsuorittajaId": t.tyonsuorittaja_id, "Tila": t.tila }).to_string(),
        "Timestamp": t.muokattu,
    })
}

/// The digest header's value for `body`: `sha256=` and the lowercase hex of its HMAC-SHA256
/// under `secret`.
fn digest(secret: &[u8], body: &[u8]) -> String {
    let mut mac =
        <Hmac<Sha256> as Mac>::new_from_slice(secret).expect("HMAC takes a key of any length");
    mac.update(body);
    format!("sha256={}", hex::encode(mac.finalize().into_bytes()))
}

/// reqwest is built without a TLS provider of its own and panics building a client while the
/// process has none, even for `http://`: install rustls' ring provider unless one is there.
pub(super) fn install_tls_provider() {
    if rustls::crypto::CryptoProvider::get_default().is_none() {
        // An error means another thread installed one in between, which serves as well.
        let _ = rustls::crypto::ring::default_provider().install_default();
    }
}

#[cfg(test)]
mod tests {
    use super::digest;

    #[test]
    fn the_digest_is_rfc_4231_hmac_sha256_in_lowercase_hex() {
        // RFC 4231, test case 2.
        assert_eq!(
            digest(b"Jefe", b"what do ya want for nothing?"),
            "sha256=5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
    }
}
