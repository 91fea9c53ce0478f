//! Headers as the proxy hands them over: names and values as bytes, in order, repeats kept. One
//! type serves the host (built from the ABI's header map) and the tests (built from text pairs), and
//! it holds the one query-string reader.
//!
//! Bytes are never turned into text by guessing: [`Headers::text`] answers only for UTF-8 values,
//! and the stages that must judge a value (credentials, limiter keys, the path) ask
//! [`Headers::count`] and [`Headers::all_utf8`] so that a repeated or undecodable value is refused
//! rather than silently skipped.

/// What extraction reads from a request. [`Request`] implements it for the host and for tests.
pub trait TokenSource {
    /// The value of a (lower-case) request header.
    fn header(&self, name: &str) -> Option<&str>;
    /// The query string, without the leading `?` (empty if none).
    fn query(&self) -> &str;
    /// How many times a (lower-case) header occurs.
    fn header_count(&self, name: &str) -> usize {
        usize::from(self.header(name).is_some())
    }
    /// Whether every occurrence of a header is UTF-8 (`header` answers only for UTF-8 values).
    fn header_is_utf8(&self, _name: &str) -> bool {
        true
    }
}

/// What the pipeline reads of a request. `header` (from [`TokenSource`]) takes lower-case names.
pub trait RequestView: TokenSource {
    fn method(&self) -> &str;
    /// `:path`, query string included.
    fn path(&self) -> &str;
    fn authority(&self) -> &str;
    /// `http` or `https` as the client used it.
    fn scheme(&self) -> &str;
    /// The connection's source address (`ip:port`), read only when a rate-limit key needs it.
    fn source_address(&self) -> Option<&str> {
        None
    }
    /// A body follows the headers (the headers did not end the stream).
    fn has_body(&self) -> bool {
        false
    }
}

/// Response (or any) headers, looked up by lower-case name.
pub trait HeaderView {
    fn header(&self, name: &str) -> Option<&str>;
}

/// Header pairs as bytes: (name, value).
pub type BytePairs = Vec<(Vec<u8>, Vec<u8>)>;

/// Request or response headers (pseudo-headers included), lower-case names. Held as one buffer with
/// the position of each name and value: the host's serialized map is kept as it arrived
/// ([`Headers::from_wire`]), so reading a request's headers costs two allocations, not two per header.
#[derive(Debug, Clone, Default)]
pub struct Headers {
    bytes: Vec<u8>,
    spans: Vec<Span>,
}

/// Where one pair lies in [`Headers::bytes`].
#[derive(Debug, Clone, Copy)]
struct Span {
    name: (usize, usize),
    value: (usize, usize),
}

impl PartialEq for Headers {
    fn eq(&self, other: &Headers) -> bool {
        self.spans.len() == other.spans.len() && self.pairs().eq(other.pairs())
    }
}

impl Eq for Headers {}

impl Headers {
    pub fn from_pairs(pairs: BytePairs) -> Headers {
        let size = pairs.iter().map(|(k, v)| k.len() + v.len()).sum();
        let mut headers = Headers {
            bytes: Vec::with_capacity(size),
            spans: Vec::with_capacity(pairs.len()),
        };
        for (name, value) in &pairs {
            headers.push(name, value);
        }
        headers
    }

    /// The proxy-wasm ABI's serialized header map, kept as it is (see [`decode_header_map`]);
    /// `None` when the lengths do not fit the data.
    pub fn from_wire(bytes: Vec<u8>) -> Option<Headers> {
        let mut spans = Vec::new();
        walk_header_map(&bytes, |name, value| spans.push(Span { name, value }))?;
        Some(Headers { bytes, spans })
    }

    /// From text pairs (tests, fixtures); names are lower-cased as the proxy does.
    pub fn of(pairs: &[(&str, &str)]) -> Headers {
        let mut headers = Headers::default();
        for (k, v) in pairs {
            headers.push(k.to_ascii_lowercase().as_bytes(), v.as_bytes());
        }
        headers
    }

    /// With raw bytes for values (tests of non-UTF-8 input).
    pub fn of_bytes(pairs: &[(&str, &[u8])]) -> Headers {
        let mut headers = Headers::default();
        for (k, v) in pairs {
            headers.push(k.to_ascii_lowercase().as_bytes(), v);
        }
        headers
    }

    fn push(&mut self, name: &[u8], value: &[u8]) {
        let start = self.bytes.len();
        self.bytes.extend_from_slice(name);
        let middle = self.bytes.len();
        self.bytes.extend_from_slice(value);
        self.spans.push(Span {
            name: (start, middle),
            value: (middle, self.bytes.len()),
        });
    }

    fn slice(&self, (start, end): (usize, usize)) -> &[u8] {
        self.bytes.get(start..end).unwrap_or_default()
    }

    /// Every (name, value) pair, in order.
    pub fn pairs(&self) -> impl Iterator<Item = (&[u8], &[u8])> {
        self.spans
            .iter()
            .map(|span| (self.slice(span.name), self.slice(span.value)))
    }

    /// The values of `name`, in order.
    pub fn values<'a, 'n>(&'a self, name: &'n str) -> impl Iterator<Item = &'a [u8]> + use<'a, 'n> {
        self.pairs()
            .filter(move |(k, _)| *k == name.as_bytes())
            .map(|(_, v)| v)
    }

    /// The first value of `name`, as bytes.
    pub fn bytes(&self, name: &str) -> Option<&[u8]> {
        self.values(name).next()
    }

    /// The first value of `name` when it is UTF-8.
    pub fn text(&self, name: &str) -> Option<&str> {
        self.bytes(name).and_then(|v| std::str::from_utf8(v).ok())
    }

    /// How many times `name` occurs.
    pub fn count(&self, name: &str) -> usize {
        self.values(name).count()
    }

    /// Whether every occurrence of `name` is UTF-8 (true when absent).
    pub fn all_utf8(&self, name: &str) -> bool {
        self.values(name).all(|v| std::str::from_utf8(v).is_ok())
    }

    /// Text pairs of the headers whose name and value are UTF-8 (the rest are left out).
    pub fn text_pairs(&self) -> impl Iterator<Item = (&str, &str)> {
        self.pairs()
            .filter_map(|(k, v)| Some((std::str::from_utf8(k).ok()?, std::str::from_utf8(v).ok()?)))
    }

    /// Sets the first occurrence of `name` (or adds it) to `value`.
    pub fn replace(&mut self, name: &str, value: &[u8]) {
        let mut replaced = false;
        let pairs: BytePairs = self
            .pairs()
            .map(|(k, v)| {
                if !replaced && k == name.as_bytes() {
                    replaced = true;
                    (k.to_vec(), value.to_vec())
                } else {
                    (k.to_vec(), v.to_vec())
                }
            })
            .collect();
        *self = Headers::from_pairs(pairs);
        if !replaced {
            self.push(name.as_bytes(), value);
        }
    }

    pub fn len(&self) -> usize {
        self.spans.len()
    }

    pub fn is_empty(&self) -> bool {
        self.spans.is_empty()
    }
}

impl HeaderView for Headers {
    fn header(&self, name: &str) -> Option<&str> {
        self.text(name)
    }
}

/// The query string of a `:path` (after `?`, before any `#`), empty when there is none.
pub fn query_of(path: &str) -> &str {
    path.split_once('?')
        .map_or("", |(_, q)| q.split('#').next().unwrap_or(q))
}

/// One request as the pipeline reads it.
#[derive(Debug, Clone, Default)]
pub struct Request {
    headers: Headers,
    has_body: bool,
    /// `source.address`, filled in by the host only when a rate limit keys on the client address.
    source_address: Option<String>,
}

/// Pseudo-headers the pipeline must read as text; a value that is not UTF-8 cannot be judged.
const PSEUDO: [&str; 4] = [":method", ":path", ":authority", ":scheme"];

impl Request {
    pub fn new(headers: Headers, has_body: bool) -> Request {
        Request {
            headers,
            has_body,
            source_address: None,
        }
    }

    /// A request from text pairs (tests and fixtures).
    pub fn of(pairs: &[(&str, &str)]) -> Request {
        Request::new(Headers::of(pairs), false)
    }

    pub fn with_body(mut self, has_body: bool) -> Request {
        self.has_body = has_body;
        self
    }

    pub fn with_source_address(mut self, address: Option<String>) -> Request {
        self.source_address = address;
        self
    }

    /// One more header after the others, repeats kept (tests: repeated and non-UTF-8 values).
    pub fn with_header(mut self, name: &str, value: impl AsRef<[u8]>) -> Request {
        self.headers
            .push(name.to_ascii_lowercase().as_bytes(), value.as_ref());
        self
    }

    pub fn headers(&self) -> &Headers {
        &self.headers
    }

    pub fn headers_mut(&mut self) -> &mut Headers {
        &mut self.headers
    }

    /// A pseudo-header (method, path, authority, scheme) that is repeated or not UTF-8: the request
    /// cannot be routed reliably.
    pub fn has_unreadable_pseudo_header(&self) -> bool {
        // One pass over the headers (this runs for every request).
        let mut seen = [false; PSEUDO.len()];
        for (name, value) in self.headers.pairs() {
            if name.first() != Some(&b':') {
                continue;
            }
            let Some(index) = PSEUDO.iter().position(|p| p.as_bytes() == name) else {
                continue;
            };
            if let Some(seen) = seen.get_mut(index) {
                if *seen || std::str::from_utf8(value).is_err() {
                    return true;
                }
                *seen = true;
            }
        }
        false
    }
}

impl TokenSource for Request {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers.text(name)
    }

    fn query(&self) -> &str {
        query_of(self.path())
    }

    fn header_count(&self, name: &str) -> usize {
        self.headers.count(name)
    }

    fn header_is_utf8(&self, name: &str) -> bool {
        self.headers.all_utf8(name)
    }
}

impl HeaderView for Request {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers.text(name)
    }
}

impl RequestView for Request {
    fn method(&self) -> &str {
        self.headers.text(":method").unwrap_or("")
    }

    fn path(&self) -> &str {
        self.headers.text(":path").unwrap_or("")
    }

    fn authority(&self) -> &str {
        self.headers.text(":authority").unwrap_or("")
    }

    fn scheme(&self) -> &str {
        self.headers
            .text("x-forwarded-proto")
            .or_else(|| self.headers.text(":scheme"))
            .unwrap_or("http")
    }

    fn source_address(&self) -> Option<&str> {
        self.source_address.as_deref()
    }

    fn has_body(&self) -> bool {
        self.has_body
    }
}

/// The proxy-wasm ABI's serialized header map: a count, then (name length, value length) pairs,
/// then NUL-terminated names and values. `None` when the lengths do not fit the data.
pub fn decode_header_map(bytes: &[u8]) -> Option<BytePairs> {
    let mut pairs = Vec::new();
    walk_header_map(bytes, |name, value| {
        let slice = |(start, end): (usize, usize)| bytes.get(start..end).unwrap_or_default();
        pairs.push((slice(name).to_vec(), slice(value).to_vec()));
    })?;
    Some(pairs)
}

/// Calls `each` with the (start, end) of every name and value of a serialized header map, in order;
/// `None` when the lengths do not fit the data.
fn walk_header_map(
    bytes: &[u8],
    mut each: impl FnMut((usize, usize), (usize, usize)),
) -> Option<()> {
    if bytes.is_empty() {
        return Some(());
    }
    let read_u32 = |at: usize| -> Option<usize> {
        let word: [u8; 4] = bytes.get(at..at.checked_add(4)?)?.try_into().ok()?;
        usize::try_from(u32::from_le_bytes(word)).ok()
    };
    let count = read_u32(0)?;
    let mut data = count.checked_mul(8)?.checked_add(4)?;
    if data > bytes.len() {
        return None;
    }
    for n in 0..count {
        let lengths = n.checked_mul(8)?.checked_add(4)?;
        let name_len = read_u32(lengths)?;
        let value_len = read_u32(lengths.checked_add(4)?)?;
        let name = (data, data.checked_add(name_len)?);
        data = name.1.checked_add(1)?;
        let value = (data, data.checked_add(value_len)?);
        data = value.1.checked_add(1)?;
        // Both NULs must lie inside the data too.
        if data > bytes.len() {
            return None;
        }
        each(name, value);
    }
    Some(())
}

/// The inverse of [`decode_header_map`].
pub fn encode_header_map(pairs: &[(&str, &[u8])]) -> Vec<u8> {
    let size = pairs.iter().fold(4, |n, (k, v)| n + 10 + k.len() + v.len());
    let mut out = Vec::with_capacity(size);
    let len = |n: usize| u32::try_from(n).unwrap_or(u32::MAX).to_le_bytes();
    out.extend_from_slice(&len(pairs.len()));
    for (name, value) in pairs {
        out.extend_from_slice(&len(name.len()));
        out.extend_from_slice(&len(value.len()));
    }
    for (name, value) in pairs {
        out.extend_from_slice(name.as_bytes());
        out.push(0);
        out.extend_from_slice(value);
        out.push(0);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_header_map_survives_encoding_and_decoding_with_any_bytes() {
        let value: &[u8] = b"caf\xe9";
        let encoded = encode_header_map(&[(":path", b"/a"), ("x-name", value), ("empty", b"")]);
        let decoded = decode_header_map(&encoded).unwrap();
        assert_eq!(decoded.len(), 3);
        assert_eq!(decoded[1], (b"x-name".to_vec(), value.to_vec()));
        assert_eq!(decoded[2], (b"empty".to_vec(), Vec::new()));
    }

    #[test]
    fn a_malformed_header_map_is_refused_not_trusted() {
        let mut encoded = encode_header_map(&[("a", b"b")]);
        encoded.truncate(encoded.len() - 2);
        assert!(decode_header_map(&encoded).is_none());
        assert!(decode_header_map(&[255, 255, 255, 255]).is_none());
        assert!(decode_header_map(&[1, 0, 0]).is_none());
        assert_eq!(decode_header_map(&[]), Some(Vec::new()));
        assert!(Headers::from_wire(encoded).is_none());
    }

    #[test]
    fn headers_kept_in_their_wire_form_read_as_the_pairs_do() {
        let pairs: [(&str, &[u8]); 4] = [
            (":path", b"/a"),
            ("x-name", b"caf\xe9"),
            ("empty", b""),
            ("x-name", b"two"),
        ];
        let wire = Headers::from_wire(encode_header_map(&pairs)).unwrap();
        assert_eq!(wire, Headers::of_bytes(&pairs));
        assert_eq!(wire.bytes("x-name"), Some(&b"caf\xe9"[..]));
        assert_eq!(wire.count("x-name"), 2);
        assert_eq!(wire.text("empty"), Some(""));
        assert_eq!(wire.text(":path"), Some("/a"));
        assert_eq!(Headers::from_wire(Vec::new()), Some(Headers::default()));
        let mut changed = wire.clone();
        changed.replace("x-name", b"new");
        changed.replace("x-added", b"1");
        assert_eq!(changed.text("x-name"), Some("new"));
        assert_eq!(changed.count("x-name"), 2);
        assert_eq!(changed.text("x-added"), Some("1"));
    }

    #[test]
    fn values_that_are_not_utf8_are_bytes_not_text() {
        let headers = Headers::of_bytes(&[("x-name", b"caf\xe9"), ("x-ok", b"fine")]);
        assert_eq!(headers.bytes("x-name"), Some(&b"caf\xe9"[..]));
        assert_eq!(headers.text("x-name"), None);
        assert!(!headers.all_utf8("x-name"));
        assert_eq!(headers.text("x-ok"), Some("fine"));
        assert_eq!(headers.text_pairs().count(), 1);
    }

    #[test]
    fn repeated_and_unreadable_pseudo_headers_are_noticed() {
        let fine = Request::of(&[(":method", "GET"), (":path", "/a?b=1#f")]);
        assert!(!fine.has_unreadable_pseudo_header());
        assert_eq!(fine.query(), "b=1");
        let twice = Request::of(&[(":path", "/a"), (":path", "/b")]);
        assert!(twice.has_unreadable_pseudo_header());
        let bytes = Request::new(Headers::of_bytes(&[(":path", b"/caf\xe9")]), false);
        assert!(bytes.has_unreadable_pseudo_header());
        assert_eq!(bytes.path(), "");
    }

    #[test]
    fn repeated_headers_are_counted() {
        let r = Request::of(&[("authorization", "Bearer a"), ("authorization", "Bearer b")]);
        assert_eq!(r.header_count("authorization"), 2);
        assert_eq!(TokenSource::header(&r, "authorization"), Some("Bearer a"));
        assert_eq!(r.header_count("cookie"), 0);
    }
}
