//! One request's headers, read from the proxy once (one host call for all of them is cheaper than
//! one per header when several are needed).

use crate::jwt::extract::TokenSource;
use crate::pipeline::RequestView;
use std::cell::OnceCell;

pub struct HostRequest {
    headers: Vec<(String, String)>,
    has_body: bool,
    /// `source.address`, read from the host the first time it is asked for.
    source: OnceCell<Option<String>>,
}

impl HostRequest {
    pub fn new(headers: Vec<(String, String)>, has_body: bool) -> Self {
        HostRequest {
            headers,
            has_body,
            source: OnceCell::new(),
        }
    }

    fn get(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }
}

impl TokenSource for HostRequest {
    fn header(&self, name: &str) -> Option<&str> {
        self.get(name)
    }

    fn query(&self) -> &str {
        self.path()
            .split_once('?')
            .map_or("", |(_, q)| q.split('#').next().unwrap_or(q))
    }
}

impl RequestView for HostRequest {
    fn method(&self) -> &str {
        self.get(":method").unwrap_or("")
    }

    fn path(&self) -> &str {
        self.get(":path").unwrap_or("")
    }

    fn authority(&self) -> &str {
        self.get(":authority").unwrap_or("")
    }

    fn scheme(&self) -> &str {
        self.get("x-forwarded-proto")
            .or_else(|| self.get(":scheme"))
            .unwrap_or("http")
    }

    fn has_body(&self) -> bool {
        self.has_body
    }

    fn source_address(&self) -> Option<&str> {
        self.source
            .get_or_init(|| {
                proxy_wasm::hostcalls::get_property(vec!["source", "address"])
                    .ok()
                    .flatten()
                    .and_then(|bytes| String::from_utf8(bytes).ok())
            })
            .as_deref()
    }
}
