//! Registering and deregistering with one registry: what a service does at
//! start, on a swap that changes its description, and at its end; and
//! asking which instances of a service it lists, when a call to one failed.

use std::time::Duration;

use bytes::Bytes;
use http::{Method, StatusCode, Uri};

use crate::http::{
    ClientError, HttpClient, MAX_ANSWER, STALE_HEADER, exchange, http_client, request, send_record,
};
use crate::record::{Instances, ServiceRecord, parse_instances};
use crate::token::Token;

/// Registers and deregisters a service with one registry.
#[derive(Clone)]
pub struct RegistryClient {
    http: HttpClient,
    base_url: String,
    services_url: String,
    timeout: Duration,
    token: Token,
}

impl RegistryClient {
    /// `base_url` is `http://host:port`, with or without a trailing slash.
    pub fn new(base_url: &str, timeout: Duration) -> Result<Self, ClientError> {
        let base_url = base_url.strip_suffix('/').unwrap_or(base_url).to_owned();
        let bad = |why: &str| ClientError::BadUrl(format!("{base_url:?}: {why}"));
        let uri: Uri = base_url.parse().map_err(|_| bad("not a URL"))?;
        if uri.scheme_str() != Some("http") {
            return Err(bad("expected http://host:port"));
        }
        let authority = uri.authority().ok_or_else(|| bad("no host"))?;
        if authority.host().is_empty() || authority.port_u16().is_none_or(|p| p == 0) {
            return Err(bad("expected http://host:port"));
        }
        if !matches!(uri.path(), "" | "/")
            || uri.query().is_some()
            || authority.as_str().contains('@')
        {
            return Err(bad("expected nothing after host:port"));
        }
        Ok(Self {
            http: http_client(),
            services_url: format!("{base_url}/services"),
            base_url,
            timeout,
            token: Token::default(),
        })
    }

    /// Sends `token` with every registration and deregistration.
    pub fn with_token(mut self, token: Token) -> Self {
        self.token = token;
        self
    }

    pub fn base_url(&self) -> &str {
        &self.base_url
    }

    /// Registers `record`; answers the current instances of every service it
    /// requires.
    pub async fn register(&self, record: &ServiceRecord) -> Result<Instances, ClientError> {
        let answer = self.send(Method::POST, record).await?;
        parse_instances(&answer).map_err(|e| ClientError::BadAnswer(e.to_string()))
    }

    pub async fn deregister(&self, record: &ServiceRecord) -> Result<(), ClientError> {
        self.send(Method::DELETE, record).await.map(drop)
    }

    /// The addresses of the instances of `name` registered now (`GET
    /// /services/{name}?consistent`; none when it answers 404): what the
    /// table holds, not a replica's copy of it, which may lack what was
    /// registered elsewhere (a replica cut off from etcd's quorum answers
    /// 503 instead). An answer marked stale, from a registry that reads
    /// no truth but its copy, is [`ClientError::Stale`].
    pub async fn addresses(&self, name: &str) -> Result<Vec<String>, ClientError> {
        let url = format!("{}/{}?consistent", self.services_url, percent_encode(name));
        let asked = request(Method::GET, &url, Bytes::new(), &self.token)?;
        let (head, answer) = exchange(&self.http, asked, self.timeout, MAX_ANSWER).await?;
        if head.headers.contains_key(STALE_HEADER) {
            return Err(ClientError::Stale);
        }
        match head.status {
            StatusCode::NOT_FOUND => Ok(Vec::new()),
            // The records as registration answers carry them, read by the
            // same rules; the health fields beside them are ignored.
            StatusCode::OK => serde_json::from_slice::<Vec<ServiceRecord>>(&answer)
                .map(|listed| listed.into_iter().map(|record| record.addr).collect())
                .map_err(|e| ClientError::BadAnswer(e.to_string())),
            _ => Err(ClientError::from_answer(head.status, &answer)),
        }
    }

    async fn send(&self, method: Method, record: &ServiceRecord) -> Result<Bytes, ClientError> {
        let (status, answer) = send_record(
            &self.http,
            method,
            &self.services_url,
            record,
            self.timeout,
            &self.token,
        )
        .await?;
        if status != StatusCode::OK {
            return Err(ClientError::from_answer(status, &answer));
        }
        Ok(answer)
    }
}

/// `text` as one path segment: every byte but RFC 3986's unreserved ones
/// percent-encoded.
fn percent_encode(text: &str) -> String {
    text.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => {
                char::from(b).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_name_is_one_path_segment() {
        assert_eq!(percent_encode("log"), "log");
        assert_eq!(percent_encode("a/b?c d"), "a%2Fb%3Fc%20d");
        assert_eq!(percent_encode("é"), "%C3%A9");
    }

    const T: Duration = Duration::from_secs(1);

    #[tokio::test]
    async fn accepts_http_host_port_only() {
        let client = RegistryClient::new("http://127.0.0.1:20000/", T).unwrap();
        assert_eq!(client.base_url(), "http://127.0.0.1:20000");
        assert_eq!(client.services_url, "http://127.0.0.1:20000/services");
        for bad in [
            "127.0.0.1:20000",
            "https://127.0.0.1:20000",
            "http://127.0.0.1",
            "http://127.0.0.1:0",
            "http://127.0.0.1:20000/x",
            "http://u@127.0.0.1:20000",
            "",
        ] {
            assert!(
                matches!(RegistryClient::new(bad, T), Err(ClientError::BadUrl(_))),
                "{bad}"
            );
        }
    }

    #[tokio::test]
    async fn reports_refused_connections() {
        // Bind then drop to get a port that nobody listens on.
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let client = RegistryClient::new(&format!("http://127.0.0.1:{port}"), T).unwrap();
        let err = client
            .register(&ServiceRecord::new("a", "127.0.0.1:1", vec![]))
            .await
            .unwrap_err();
        assert!(matches!(err, ClientError::Connect(_)), "{err:?}");
    }
}
