//! Why the database could not be opened, in words an operator can act on.
//! The pool reports only "timed out while waiting for an open connection";
//! one direct look at the server named in the URL finds the cause: a name
//! that does not resolve, a port that refuses, or a server that answers
//! but turned the login down. The password never appears.

use std::time::Duration;

use tokio::net::TcpStream;

const LOOK: Duration = Duration::from_secs(3);

/// `postgres://user@host:port/db`, without the password.
pub(crate) fn redacted(raw: &str) -> String {
    match url::Url::parse(raw) {
        Ok(mut u) => {
            if u.password().is_some() {
                let _ = u.set_password(Some("***"));
            }
            u.to_string()
        }
        Err(_) => "(an unparsable DATABASE_URL)".to_owned(),
    }
}

/// Explains a failure to open the PostgreSQL database at `raw`; `None` for
/// SQLite, whose errors already name the file.
pub(crate) async fn explain(raw: &str, error: &dyn std::fmt::Display) -> Option<String> {
    let u = url::Url::parse(raw).ok()?;
    if !matches!(u.scheme(), "postgres" | "postgresql") {
        return None;
    }
    let host = u.host_str().unwrap_or("localhost").to_owned();
    let port = u.port().unwrap_or(5432);
    let target = format!("{host}:{port}");
    let shown = redacted(raw);
    let cause = match tokio::net::lookup_host((host.as_str(), port)).await {
        Err(e) => format!("the host name `{host}` does not resolve (DNS: {e})"),
        Ok(_) => {
            match tokio::time::timeout(LOOK, TcpStream::connect((host.as_str(), port))).await {
                Err(_) => format!(
                    "{target} did not answer within {} s (a firewall, or the wrong host?)",
                    LOOK.as_secs()
                ),
                Ok(Err(e)) if e.kind() == std::io::ErrorKind::ConnectionRefused => {
                    format!(
                        "{target} refused the connection: is PostgreSQL running and listening there?"
                    )
                }
                Ok(Err(e)) => format!("cannot reach {target}: {e}"),
                Ok(Ok(_)) => format!(
                    "{target} accepts connections, but opening the database failed: check the user, password and database name ({error})"
                ),
            }
        }
    };
    Some(format!(
        "cannot open the database {shown} (DATABASE_URL): {cause}"
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_password_is_never_shown() {
        let shown = redacted("postgres://app:s3cret@db.internal:5433/consultd");
        assert!(!shown.contains("s3cret"), "{shown}");
        assert!(shown.contains("app:***@db.internal:5433"), "{shown}");
    }

    #[tokio::test]
    async fn a_closed_port_is_named_as_refused() {
        // Bind then drop: a local port that nothing listens on.
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let url = format!("postgres://u:pw@127.0.0.1:{port}/db");
        let said = explain(&url, &"pool timed out").await.unwrap();
        assert!(
            said.contains(&format!("127.0.0.1:{port} refused")),
            "{said}"
        );
        assert!(!said.contains("pw@"), "{said}");
    }

    #[tokio::test]
    async fn an_unknown_host_is_named_as_dns() {
        let said = explain("postgres://u@no-such-host.invalid/db", &"x")
            .await
            .unwrap();
        assert!(said.contains("does not resolve"), "{said}");
    }

    #[tokio::test]
    async fn sqlite_is_left_to_its_own_error() {
        assert!(explain("sqlite:///tmp/x.db?mode=rwc", &"x").await.is_none());
    }
}
