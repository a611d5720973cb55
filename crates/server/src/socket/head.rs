//! Frees an engine.io request's head from the connection's read buffer.
//!
//! hyper parses a request in place: its URI and header values are slices of
//! the connection's read buffer, 8 KiB at the least. engineioxide keeps the
//! head of the request that opened a session for as long as the socket
//! lives (`Socket::req_parts`), and the upgrading request's head for as long
//! as its websocket task runs, so each idle socket held that whole buffer:
//! 4 KiB of its heap (docs/benchmarks.md, "Idle sockets: the engine's
//! share"). Copying the URI and the header values into one buffer of their
//! own size lets hyper's buffer go when the upgrade hands the connection over.
//!
//! Only the headers something reads later are kept ([`KEPT`]): a browser
//! sends a dozen more (cookies, user agent, languages) that would stay in
//! memory for the socket's life and be read by nothing.

use axum::extract::{OriginalUri, Request};
use bytes::{BufMut, Bytes, BytesMut};
use http::header::{AUTHORIZATION, CONTENT_TYPE, HeaderName, SEC_WEBSOCKET_KEY};
use http::{HeaderMap, HeaderValue, Uri};

/// socketioxide's default path, which consultd does not change.
const ENGINE_PATH: &str = "/socket.io";

/// What is read from an engine.io request's head after this middleware: the
/// engine reads the websocket key (to answer the upgrade) and a polling
/// POST's content type; consultd's connect reads the token
/// (`auth::handshake_token`) and the client IP (`limits::client_ip`). A new
/// reader of `Socket::req_parts` must add its header here.
static KEPT: [HeaderName; 4] = [
    SEC_WEBSOCKET_KEY,
    CONTENT_TYPE,
    AUTHORIZATION,
    HeaderName::from_static("x-forwarded-for"),
];

/// The middleware: engine.io requests get an owned head, others pass as they are.
pub async fn detach_engine_head(req: Request) -> Request {
    if !req.uri().path().starts_with(ENGINE_PATH) {
        return req;
    }
    let (mut parts, body) = req.into_parts();
    detach(&mut parts.uri, &mut parts.headers);
    // axum's router keeps a clone of the URI, which shares the buffer too.
    if let Some(OriginalUri(original)) = parts.extensions.get_mut::<OriginalUri>() {
        *original = own_uri(original);
    }
    Request::from_parts(parts, body)
}

fn own_uri(uri: &Uri) -> Uri {
    Uri::try_from(uri.to_string()).unwrap_or_else(|_| uri.clone())
}

/// Replaces `uri` with a copy, and `headers` with a map of only the
/// [`KEPT`] ones, their values copied; the copies share one buffer of
/// exactly their size. Names need no copy: the kept ones are constants.
fn detach(uri: &mut Uri, headers: &mut HeaderMap) {
    let text = uri.to_string();
    let kept = || {
        KEPT.iter()
            .flat_map(|name| headers.get_all(name).iter().map(move |v| (name, v)))
    };
    let size = text.len() + kept().map(|(_, v)| v.len()).sum::<usize>();
    let mut buf = BytesMut::with_capacity(size);
    buf.put_slice(text.as_bytes());
    for (_, value) in kept() {
        buf.put_slice(value.as_bytes());
    }
    let buf: Bytes = buf.freeze();

    // Both were valid when parsed, and the same bytes are valid again; if
    // either check ever disagreed, the original stays (costing only memory).
    if let Ok(owned) = Uri::from_maybe_shared(buf.slice(..text.len())) {
        *uri = owned;
    }
    let mut owned_headers = HeaderMap::with_capacity(kept().count());
    let mut at = text.len();
    for (name, value) in kept() {
        let end = at + value.len();
        let mut owned =
            HeaderValue::from_maybe_shared(buf.slice(at..end)).unwrap_or_else(|_| value.clone());
        owned.set_sensitive(value.is_sensitive());
        owned_headers.append(name.clone(), owned);
        at = end;
    }
    *headers = owned_headers;
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::ops::Range;

    fn range(bytes: &[u8]) -> Range<usize> {
        let start = bytes.as_ptr() as usize;
        start..start + bytes.len()
    }

    fn inside(part: &[u8], whole: &Range<usize>) -> bool {
        let part = range(part);
        part.start >= whole.start && part.end <= whole.end
    }

    /// A head built as hyper builds one: every part a slice of one big buffer.
    fn parsed_head(read_buf: &Bytes) -> (Uri, HeaderMap) {
        let text = std::str::from_utf8(read_buf).unwrap();
        let at = |s: &str| text.find(s).unwrap();
        let slice = |s: &str| read_buf.slice(at(s)..at(s) + s.len());
        let value = |s: &str| HeaderValue::from_maybe_shared(slice(s)).unwrap();
        let uri =
            Uri::from_maybe_shared(slice("/socket.io/?EIO=4&transport=websocket&token=t.k.n"))
                .unwrap();
        let mut headers = HeaderMap::new();
        headers.insert(http::header::HOST, value("127.0.0.1:4000"));
        headers.insert(
            http::header::USER_AGENT,
            value("Mozilla/5.0 (X11; Linux x86_64)"),
        );
        headers.append("x-forwarded-for", value("203.0.113.7"));
        headers.insert(http::header::COOKIE, value("theme=dark; io=abc"));
        headers.append("x-forwarded-for", value("198.51.100.2"));
        headers.insert(SEC_WEBSOCKET_KEY, value("dGhlIHNhbXBsZSBub25jZQ=="));
        let mut auth = value("Bearer a.b.c");
        auth.set_sensitive(true);
        headers.insert(AUTHORIZATION, auth);
        (uri, headers)
    }

    fn read_buffer() -> Bytes {
        let mut text = String::from(
            "GET /socket.io/?EIO=4&transport=websocket&token=t.k.n HTTP/1.1\r\n\
             host: 127.0.0.1:4000\r\nuser-agent: Mozilla/5.0 (X11; Linux x86_64)\r\n\
             x-forwarded-for: 203.0.113.7\r\ncookie: theme=dark; io=abc\r\n\
             x-forwarded-for: 198.51.100.2\r\n\
             sec-websocket-key: dGhlIHNhbXBsZSBub25jZQ==\r\n\
             authorization: Bearer a.b.c\r\n\r\n",
        );
        text.extend(std::iter::repeat_n(' ', 8192 - text.len()));
        Bytes::from(text)
    }

    #[test]
    fn the_detached_head_points_into_no_part_of_the_read_buffer() {
        let read_buf = read_buffer();
        let whole = range(&read_buf);
        let (mut uri, mut headers) = parsed_head(&read_buf);
        let uri_before = uri.to_string();
        assert!(inside(uri.path().as_bytes(), &whole));
        assert!(headers.values().all(|v| inside(v.as_bytes(), &whole)));

        detach(&mut uri, &mut headers);

        assert_eq!(uri.to_string(), uri_before);
        assert!(!inside(uri.path().as_bytes(), &whole));
        assert!(!inside(uri.query().unwrap().as_bytes(), &whole));
        assert!(!headers.is_empty());
        assert!(headers.values().all(|v| !inside(v.as_bytes(), &whole)));
    }

    #[test]
    fn the_detached_head_keeps_only_what_is_read_with_its_values_in_order() {
        let read_buf = read_buffer();
        let (mut uri, mut headers) = parsed_head(&read_buf);

        detach(&mut uri, &mut headers);

        assert_eq!(uri.query(), Some("EIO=4&transport=websocket&token=t.k.n"));
        let mut names: Vec<_> = headers.keys().map(|n| n.as_str()).collect();
        names.sort_unstable();
        assert_eq!(
            names,
            ["authorization", "sec-websocket-key", "x-forwarded-for"],
            "host, user-agent and cookie are read by nothing"
        );
        let forwarded: Vec<_> = headers.get_all("x-forwarded-for").iter().collect();
        assert_eq!(forwarded, ["203.0.113.7", "198.51.100.2"]);
        assert_eq!(headers[SEC_WEBSOCKET_KEY], "dGhlIHNhbXBsZSBub25jZQ==");
        assert_eq!(headers[AUTHORIZATION], "Bearer a.b.c");
        assert!(headers[AUTHORIZATION].is_sensitive());
        assert!(!headers[SEC_WEBSOCKET_KEY].is_sensitive());
    }

    /// The connect reads the client IP and the token from the head the
    /// socket keeps: both must read the same after the detach.
    #[test]
    fn what_the_connect_reads_survives_the_detach() {
        let read_buf = read_buffer();
        let (mut uri, mut headers) = parsed_head(&read_buf);
        let proxy: std::net::IpAddr = "10.0.0.2".parse().unwrap();
        let trusted = crate::limits::Networks::parse("10.0.0.0/8", "TRUSTED_PROXIES").unwrap();
        let read = |uri: &Uri, headers: &HeaderMap| {
            let ip = crate::limits::client_ip(proxy, headers, &trusted);
            let header_token = crate::auth::bearer_token(headers);
            let token =
                crate::auth::handshake_token(&serde_json::Value::Null, uri.query(), headers);
            (ip, header_token, token)
        };
        let before = read(&uri, &headers);

        detach(&mut uri, &mut headers);

        assert_eq!(read(&uri, &headers), before);
        assert_eq!(
            before.0,
            "198.51.100.2".parse::<std::net::IpAddr>().unwrap()
        );
        assert_eq!(before.1.as_deref(), Some("a.b.c"));
    }

    #[tokio::test]
    async fn only_engine_io_requests_are_copied() {
        let read_buf = read_buffer();
        let whole = range(&read_buf);
        for (path, copied) in [("/socket.io/?EIO=4", true), ("/api/calls", false)] {
            let (_, headers) = parsed_head(&read_buf);
            let mut req = Request::new(axum::body::Body::empty());
            *req.uri_mut() = path.parse().unwrap();
            *req.headers_mut() = headers;
            let (uri, _) = parsed_head(&read_buf);
            req.extensions_mut().insert(OriginalUri(uri));
            let req = detach_engine_head(req).await;
            let auth = req.headers()[AUTHORIZATION].as_bytes();
            assert_eq!(!inside(auth, &whole), copied, "{path}");
            assert_eq!(
                req.headers().contains_key(http::header::HOST),
                !copied,
                "{path}"
            );
            let original = &req.extensions().get::<OriginalUri>().unwrap().0;
            assert_eq!(
                !inside(original.path().as_bytes(), &whole),
                copied,
                "{path}"
            );
        }
    }
}
