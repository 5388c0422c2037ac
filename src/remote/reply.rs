//! What one request came to, as the exchange saw it, and the helpers that read a response
//! safely: a body read up to a cap, a header shown as bounded printable text, `Retry-After`,
//! an error's cause chain, and the server's own words cut, escaped and scrubbed of secrets.

use std::time::Duration;

use reqwest::StatusCode;
use reqwest::header::HeaderValue;

use crate::domain::escape::esc;

/// What one request came to.
#[derive(Debug)]
pub enum Reply {
    /// It never connected (refused, DNS, TLS handshake, proxy): nothing reached the remote.
    Unreached(String),
    /// It was sent, but no whole answer came back (a timeout, a lost connection, a body cut
    /// off): the remote may have acted on it.
    Lost(String),
    /// An HTTP answer.
    Answer(Answer),
}

/// An HTTP answer, its body read up to its cap (a redirect's body is not read; an error
/// answer's body has every secret of the request replaced by `***`).
#[derive(Debug)]
pub struct Answer {
    pub status: StatusCode,
    /// The `Location` header, as printable text.
    pub location: Option<String>,
    /// `Retry-After`, as a delay from now.
    pub retry_after: Option<Duration>,
    pub body: Body,
}

/// A response body read up to a cap.
#[derive(Debug)]
pub enum Body {
    Whole(Vec<u8>),
    /// The body is longer than the cap (by its `Content-Length`, or as it streamed); what was
    /// read up to the cap.
    Truncated(Vec<u8>),
}

impl Body {
    /// What was read, whole or not.
    pub fn bytes(&self) -> &[u8] {
        match self {
            Body::Whole(b) | Body::Truncated(b) => b,
        }
    }
}

/// How much of an error answer is read for its message.
pub const ERROR_BODY_BYTES: u64 = 64 * 1024;

/// At most this many characters of a server's message are quoted.
pub const MESSAGE_CHARS: usize = 200;

/// Reads a body chunk by chunk, never holding more than `cap` bytes of it; a declared
/// `Content-Length` over the cap is refused before reading.
pub(crate) async fn read_body(
    mut resp: reqwest::Response,
    cap: u64,
) -> Result<Body, reqwest::Error> {
    if resp.content_length().is_some_and(|n| n > cap) {
        return Ok(Body::Truncated(Vec::new()));
    }
    let mut out = Vec::with_capacity(resp.content_length().unwrap_or(0).min(cap) as usize);
    while let Some(chunk) = resp.chunk().await? {
        let room = cap.saturating_sub(out.len() as u64) as usize;
        if chunk.len() > room {
            out.extend_from_slice(&chunk[..room]);
            return Ok(Body::Truncated(out));
        }
        out.extend_from_slice(&chunk);
    }
    Ok(Body::Whole(out))
}

/// A header value from the server as printable text, bounded in length.
pub(crate) fn show_header(v: &HeaderValue) -> String {
    let text = String::from_utf8_lossy(v.as_bytes());
    let mut out: String = text
        .chars()
        .take(200)
        .flat_map(char::escape_default)
        .collect();
    if text.chars().count() > 200 {
        out.push('…');
    }
    out
}

/// `Retry-After` as seconds or as an HTTP date.
pub fn parse_retry_after(v: &HeaderValue) -> Option<Duration> {
    let s = v.to_str().ok()?.trim();
    if let Ok(secs) = s.parse::<u64>() {
        return Some(Duration::from_secs(secs));
    }
    let when = chrono::DateTime::parse_from_rfc2822(s).ok()?;
    (when.with_timezone(&chrono::Utc) - chrono::Utc::now())
        .to_std()
        .ok()
}

/// A reqwest error with its whole cause chain ("error sending request: client error
/// (Connect): tcp connect error: Connection refused (os error 111)"), without the URL.
pub(crate) fn error_chain(e: reqwest::Error) -> String {
    let timed_out = e.is_timeout();
    let e = e.without_url();
    let mut out = e.to_string();
    let mut source = std::error::Error::source(&e);
    while let Some(s) = source {
        let text = s.to_string();
        // Some errors repeat their source's text in their own.
        if !out.contains(&text) {
            out.push_str(": ");
            out.push_str(&text);
        }
        source = s.source();
    }
    if timed_out && !out.contains("timed out") {
        out.push_str(" (timed out)");
    }
    out
}

/// `text` with every one of `hidden` replaced by `***`.
pub fn scrub(text: &str, hidden: &[String]) -> String {
    hidden
        .iter()
        .filter(|h| !h.is_empty())
        .fold(text.to_owned(), |t, h| t.replace(h.as_str(), "***"))
}

/// The server's own words in an error answer: the message field of a JSON body (`Message`,
/// `message`, `ExceptionMessage`, `error`, `title`), else the body's text; trimmed, cut to
/// [`MESSAGE_CHARS`] characters and escaped for a terminal (see [`crate::domain::escape`]). The body
/// was scrubbed of the request's secrets by the exchange. `(no body)` when there is nothing.
pub fn server_words(body: &[u8]) -> String {
    let found = match serde_json::from_slice::<serde_json::Value>(body) {
        Ok(serde_json::Value::Object(m)) => {
            ["Message", "message", "ExceptionMessage", "error", "title"]
                .iter()
                .find_map(|k| m.get(*k).and_then(|v| v.as_str()).map(str::to_owned))
        }
        Ok(serde_json::Value::String(s)) => Some(s),
        _ => None,
    };
    let text = found.unwrap_or_else(|| String::from_utf8_lossy(body).into_owned());
    let text = text.trim();
    if text.is_empty() {
        return "(no body)".to_owned();
    }
    let mut cut: String = text.chars().take(MESSAGE_CHARS).collect();
    if text.chars().count() > MESSAGE_CHARS {
        cut.push('…');
    }
    esc(&cut).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retry_after_in_seconds_or_as_a_date() {
        assert_eq!(
            parse_retry_after(&HeaderValue::from_static("3")),
            Some(Duration::from_secs(3))
        );
        let later = (chrono::Utc::now() + chrono::Duration::seconds(30)).to_rfc2822();
        let d = parse_retry_after(&HeaderValue::from_str(&later).unwrap()).unwrap();
        assert!(
            d > Duration::from_secs(25) && d <= Duration::from_secs(30),
            "{d:?}"
        );
        assert_eq!(parse_retry_after(&HeaderValue::from_static("soon")), None);
    }

    #[test]
    fn the_servers_words_are_its_message_cut_and_escaped() {
        assert_eq!(
            server_words(r#"{"Message": "Otsake X-AsiakasNimi puuttuu"}"#.as_bytes()),
            "Otsake X-AsiakasNimi puuttuu"
        );
        assert_eq!(
            server_words("Virheellinen avain, tili\n\x1b[2J".as_bytes()),
            "Virheellinen avain, tili\\n\\x1b[2J"
        );
        assert_eq!(server_words(b"  "), "(no body)");
        let long = "x".repeat(1000);
        assert_eq!(
            server_words(long.as_bytes()).chars().count(),
            MESSAGE_CHARS + 1
        );
        assert_eq!(
            scrub("key sekret and sekret", &["sekret".into(), String::new()]),
            "key *** and ***"
        );
    }
}
