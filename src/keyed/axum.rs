//! Keys for per-key policies under axum: the client's IP address and a header's value.
//!
//! [`ClientIp`] and [`HeaderKey`] read a key from a request; their `key_fn()` is the key
//! function a [`KeyedLayer`](super::KeyedLayer) takes, so
//! `KeyedLayer::new(per_ip, ClientIp::peer().key_fn())` gives each client address its own
//! rate limiter, and `KeyedLayer::new(sessions, HeaderKey::from_static("x-user-id").key_fn())`
//! each user their own bulkhead. Put a [`ShedLayer`](crate::http::ShedLayer) above, which
//! answers a key's refusal with `429 Too Many Requests` and `Retry-After`.
//!
//! ```
//! use axum::{Router, routing::get};
//! use palisade::LiftLayer;
//! use palisade::http::ShedLayer;
//! use palisade::keyed::axum::ClientIp;
//! use palisade::keyed::{Keyed, KeyedConfig, KeyedLayer};
//! use palisade::rate_limiter::RateLimiter;
//! use std::time::Duration;
//! use tower::ServiceBuilder;
//!
//! let limiter = RateLimiter::new(RateLimiter::builder().rate(10, Duration::from_secs(1)).build()?);
//! let per_ip = Keyed::new(KeyedConfig::default(), limiter);
//! let app: Router = Router::new().route("/", get(|| async { "hello" })).layer(
//!     ServiceBuilder::new()
//!         .layer(ShedLayer::new())
//!         .layer(KeyedLayer::new(per_ip, ClientIp::peer().key_fn()))
//!         .layer(LiftLayer),
//! );
//! // Serve it with
//! // axum::serve(listener, app.into_make_service_with_connect_info::<std::net::SocketAddr>())
//! # Ok::<(), palisade::ConfigError>(())
//! ```
//!
//! # Where the client's address comes from
//!
//! The address a server can trust is its connection's peer, which axum puts in each
//! request as [`ConnectInfo<SocketAddr>`](::axum::extract::ConnectInfo) when the app is
//! served with `into_make_service_with_connect_info::<SocketAddr>()`. Behind reverse
//! proxies (a load balancer, a CDN) the peer is the nearest proxy, and the client's address
//! travels in `X-Forwarded-For` or the standard `Forwarded` header (RFC 7239).
//!
//! Those headers are written by whoever sends the request, so they are read only when you
//! opt in with [`ClientIp::behind_proxies`], saying how many proxies you trust and which
//! header they write. Each proxy appends the address it received the request from to the
//! right of the list, after whatever the client sent. So only the entries your own proxies
//! appended are facts; the rest, the leftmost entry above all, is whatever the client chose
//! to write. A key taken from them is a key the client picks: a new one for every request
//! escapes any per-client limit, and one naming someone else spends that client's budget.
//! With `n` trusted proxies the key is the `n`-th entry from the right: the address the
//! outermost of your proxies saw.
//!
//! This holds only if clients cannot reach the server except through those proxies (a
//! client that connects directly can write all `n` entries itself), and if every proxy
//! appends to the header you name (one that does not passes the client's header through).
//!
//! # When there is no address
//!
//! A header that is missing, has fewer entries than trusted proxies, or whose chosen entry
//! is not an IP address (garbage, `unknown`, an obfuscated identifier such as `_hidden`, a
//! zone index) is not used: the key falls back to the connection's peer. That is the
//! client's own address when it connected directly, and otherwise the nearest proxy's,
//! whose key all such requests then share; either way the client did not choose it.
//! Malformed headers never panic and never make the call fail. Only a request with neither
//! a usable header nor connection info (an app served without
//! `into_make_service_with_connect_info`) gets the key `None`: one key shared by every such
//! request, so a forgotten `ConnectInfo` shows as one busy key rather than no limit.
//!
//! IPv4 clients of a dual-stack listener appear as IPv4-mapped IPv6 addresses
//! (`::ffff:192.0.2.1`); keys use the plain IPv4 address, so a client has one key however
//! it was seen. One IPv6 client usually holds a whole `/64` and can switch addresses at will,
//! so IPv6 clients are keyed by their `/64` network by default
//! ([`DEFAULT_IPV6_PREFIX`]): keyed by whole address, one client could fill a per-IP map with
//! fresh keys and lock every newcomer out. [`ClientIp::ipv6_prefix`] changes it.
//!
//! # Clone semantics
//!
//! [`ClientIp`] is `Copy` and [`HeaderKey`] a name and a length; the key functions capture
//! them by value and are `Clone + Send + Sync`, as axum's `Router::layer` needs.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use ::axum::extract::ConnectInfo;
use ::axum::extract::Request as AxumRequest;
use http::Request;
use http::header::{FORWARDED, HeaderMap, HeaderName};

/// The longest header value [`HeaderKey`] uses as a key by default: 256 bytes.
pub const DEFAULT_MAX_LEN: usize = 256;

/// The IPv6 prefix length [`ClientIp`] keys by unless told otherwise: a client's `/64`.
pub const DEFAULT_IPV6_PREFIX: u8 = 64;

/// Reads the client's IP address from a request, for per-client limits; see the
/// [module docs](self) for where the address comes from and why forwarding headers are
/// opt-in.
///
/// The key is `Option<IpAddr>`: `None` only for a request with no usable forwarding header
/// and no [`ConnectInfo`]. Use it with a `Keyed<Option<IpAddr>, _>`.
///
/// # Examples
///
/// ```
/// use axum::extract::{ConnectInfo, Request};
/// use palisade::keyed::axum::ClientIp;
/// use std::net::{IpAddr, SocketAddr};
///
/// let mut req = Request::new(axum::body::Body::empty());
/// assert_eq!(ClientIp::peer().key(&req), None);
/// req.extensions_mut().insert(ConnectInfo(SocketAddr::from(([192, 0, 2, 7], 50123))));
/// assert_eq!(ClientIp::peer().key(&req), Some(IpAddr::from([192, 0, 2, 7])));
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct ClientIp {
    header: Option<ProxyHeader>,
    proxies: usize,
    ipv6_prefix: u8,
}

/// Trusted reverse proxies in front of the server, before the header they write is named;
/// made by [`ClientIp::behind_proxies`].
///
/// # Examples
///
/// ```
/// use palisade::keyed::axum::ClientIp;
///
/// let behind_one = ClientIp::behind_proxies(1);
/// let from_xff = behind_one.x_forwarded_for();
/// let from_forwarded = behind_one.forwarded();
/// # let _ = (from_xff, from_forwarded);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct TrustedProxies {
    proxies: usize,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum ProxyHeader {
    XForwardedFor,
    Forwarded,
}

// ===== impl ClientIp =====

impl ClientIp {
    /// The connection's peer address, from [`ConnectInfo<SocketAddr>`](ConnectInfo); no
    /// header is read. For servers that clients reach directly.
    ///
    /// # Examples
    ///
    /// ```
    /// use axum::extract::{ConnectInfo, Request};
    /// use palisade::keyed::axum::ClientIp;
    /// use std::net::{IpAddr, SocketAddr};
    ///
    /// let mut req = Request::builder().header("x-forwarded-for", "203.0.113.9").body(axum::body::Body::empty())?;
    /// req.extensions_mut().insert(ConnectInfo(SocketAddr::from(([192, 0, 2, 7], 50123))));
    /// // The header is the client's word, not read.
    /// assert_eq!(ClientIp::peer().key(&req), Some(IpAddr::from([192, 0, 2, 7])));
    /// # Ok::<(), axum::http::Error>(())
    /// ```
    pub const fn peer() -> Self {
        ClientIp {
            header: None,
            proxies: 0,
            ipv6_prefix: DEFAULT_IPV6_PREFIX,
        }
    }

    /// Behind `n` reverse proxies you run or trust, each of which appends the address it
    /// received the request from to a forwarding header; name the header next
    /// ([`x_forwarded_for`](TrustedProxies::x_forwarded_for) or
    /// [`forwarded`](TrustedProxies::forwarded)). The key is then the `n`-th address from
    /// the header's right, falling back to the peer when there is none (see the
    /// [module docs](self)). Zero proxies read no header, as [`peer`](Self::peer).
    ///
    /// Count every proxy that appends, including the one that connects to the server: one
    /// load balancer is `1`; a CDN in front of it, `2`.
    ///
    /// # Examples
    ///
    /// ```
    /// use axum::extract::{ConnectInfo, Request};
    /// use palisade::keyed::axum::ClientIp;
    /// use std::net::{IpAddr, SocketAddr};
    ///
    /// // The client wrote 6.6.6.6; the CDN saw 198.51.100.4 and the load balancer the CDN.
    /// let mut req = Request::builder()
    ///     .header("x-forwarded-for", "6.6.6.6, 198.51.100.4, 203.0.113.80")
    ///     .body(axum::body::Body::empty())?;
    /// req.extensions_mut().insert(ConnectInfo(SocketAddr::from(([10, 0, 0, 2], 40000))));
    /// let key = ClientIp::behind_proxies(2).x_forwarded_for().key(&req);
    /// assert_eq!(key, Some(IpAddr::from([198, 51, 100, 4])));
    /// # Ok::<(), axum::http::Error>(())
    /// ```
    pub const fn behind_proxies(n: usize) -> TrustedProxies {
        TrustedProxies { proxies: n }
    }

    /// Keys IPv6 addresses by their first `bits` bits (their network), so a client cannot
    /// get a fresh key from each address of its network. Default [`DEFAULT_IPV6_PREFIX`]
    /// (64: one site gets at least a `/64`); 128 keys each address, 48 a whole site's
    /// allocation. Values above 128 mean 128. IPv4 addresses are kept whole.
    ///
    /// # Examples
    ///
    /// ```
    /// use axum::extract::{ConnectInfo, Request};
    /// use palisade::keyed::axum::ClientIp;
    /// use std::net::{IpAddr, SocketAddr};
    ///
    /// let mut req = Request::new(axum::body::Body::empty());
    /// let addr: SocketAddr = "[2001:db8:1:2:aaaa:bbbb:cccc:dddd]:443".parse()?;
    /// req.extensions_mut().insert(ConnectInfo(addr));
    /// let network: IpAddr = "2001:db8:1:2::".parse()?;
    /// assert_eq!(ClientIp::peer().key(&req), Some(network), "a /64 by default");
    /// let whole: IpAddr = "2001:db8:1:2:aaaa:bbbb:cccc:dddd".parse()?;
    /// assert_eq!(ClientIp::peer().ipv6_prefix(128).key(&req), Some(whole));
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub const fn ipv6_prefix(mut self, bits: u8) -> Self {
        self.ipv6_prefix = if bits > 128 { 128 } else { bits };
        self
    }

    /// The key of `req`: the client's address as configured, or `None` when neither a
    /// usable forwarding header nor [`ConnectInfo<SocketAddr>`](ConnectInfo) gives one.
    /// Reads headers without allocating.
    ///
    /// # Examples
    ///
    /// ```
    /// use palisade::keyed::axum::ClientIp;
    /// use std::net::IpAddr;
    ///
    /// let req = http::Request::builder()
    ///     .header("forwarded", r#"for="[2001:db8::17]:4711";proto=https"#)
    ///     .body(())?;
    /// let key = ClientIp::behind_proxies(1).forwarded().key(&req);
    /// assert_eq!(key, Some("2001:db8::17".parse::<IpAddr>()?));
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn key<B>(&self, req: &Request<B>) -> Option<IpAddr> {
        let forwarded = match self.header {
            Some(header) if self.proxies > 0 => header.client(req.headers(), self.proxies),
            _ => None,
        };
        let ip = forwarded.or_else(|| {
            req.extensions()
                .get::<ConnectInfo<SocketAddr>>()
                .map(|ConnectInfo(addr)| addr.ip())
        })?;
        Some(self.normalize(ip))
    }

    /// This as a key function for [`KeyedLayer::new`](super::KeyedLayer::new) under axum
    /// (requests with axum's `Body`; for another body type, call [`key`](Self::key) from
    /// a closure of your own).
    ///
    /// # Examples
    ///
    /// ```
    /// use axum::{Router, body::Body, extract::ConnectInfo, http::Request, routing::get};
    /// use palisade::LiftLayer;
    /// use palisade::http::ShedLayer;
    /// use palisade::keyed::axum::ClientIp;
    /// use palisade::keyed::{Keyed, KeyedConfig, KeyedLayer};
    /// use palisade::rate_limiter::RateLimiter;
    /// use std::{net::SocketAddr, time::Duration};
    /// use tower::{ServiceBuilder, ServiceExt};
    ///
    /// # #[cfg(feature = "tokio")]
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// let limiter = RateLimiter::new(RateLimiter::builder().rate(1, Duration::from_secs(60)).build()?);
    /// let per_ip = Keyed::new(KeyedConfig::default(), limiter);
    /// let app = Router::new().route("/", get(|| async { "hello" })).layer(
    ///     ServiceBuilder::new()
    ///         .layer(ShedLayer::new())
    ///         .layer(KeyedLayer::new(per_ip, ClientIp::peer().key_fn()))
    ///         .layer(LiftLayer),
    /// );
    /// // What `into_make_service_with_connect_info::<SocketAddr>()` does for each request:
    /// let from = |ip: [u8; 4]| {
    ///     let mut req = Request::get("/").body(Body::empty()).unwrap();
    ///     req.extensions_mut().insert(ConnectInfo(SocketAddr::from((ip, 50123))));
    ///     req
    /// };
    /// assert_eq!(app.clone().oneshot(from([192, 0, 2, 1])).await?.status(), 200);
    /// let limited = app.clone().oneshot(from([192, 0, 2, 1])).await?;
    /// assert_eq!(limited.status(), 429);
    /// assert!(limited.headers().contains_key("retry-after"));
    /// assert_eq!(app.oneshot(from([192, 0, 2, 2])).await?.status(), 200);
    /// # Ok(())
    /// # }
    /// # #[cfg(not(feature = "tokio"))] fn main() {}
    /// ```
    pub fn key_fn(self) -> impl Fn(&AxumRequest) -> Option<IpAddr> + Clone + Send + Sync + 'static {
        move |req: &AxumRequest| self.key(req)
    }

    fn normalize(&self, ip: IpAddr) -> IpAddr {
        match ip.to_canonical() {
            IpAddr::V6(v6) if self.ipv6_prefix < 128 => {
                let mask = u128::MAX
                    .checked_shl(128 - u32::from(self.ipv6_prefix))
                    .unwrap_or(0);
                IpAddr::V6(Ipv6Addr::from(v6.to_bits() & mask))
            }
            ip => ip,
        }
    }
}

// ===== impl TrustedProxies =====

impl TrustedProxies {
    /// The proxies append to `X-Forwarded-For` (`client, proxy1, proxy2`), as most load
    /// balancers and CDNs do. Entries may carry a port (`192.0.2.1:4711`,
    /// `[2001:db8::1]:4711`); the header may span several lines, read as one list.
    ///
    /// # Examples
    ///
    /// ```
    /// use palisade::keyed::axum::ClientIp;
    /// use std::net::IpAddr;
    ///
    /// let req = http::Request::builder()
    ///     .header("x-forwarded-for", "10.9.9.9, 192.0.2.33")
    ///     .body(())?;
    /// // One load balancer: its entry is the rightmost; the one left of it is the client's word.
    /// assert_eq!(ClientIp::behind_proxies(1).x_forwarded_for().key(&req), Some(IpAddr::from([192, 0, 2, 33])));
    /// # Ok::<(), http::Error>(())
    /// ```
    pub const fn x_forwarded_for(self) -> ClientIp {
        self.reading(ProxyHeader::XForwardedFor)
    }

    /// The proxies append to the standard `Forwarded` header (RFC 7239), whose elements
    /// name the client with `for=`: `for=192.0.2.60;proto=http, for="[2001:db8::1]:4711"`.
    ///
    /// # Examples
    ///
    /// ```
    /// use palisade::keyed::axum::ClientIp;
    /// use std::net::IpAddr;
    ///
    /// let req = http::Request::builder()
    ///     .header("forwarded", "for=192.0.2.60;proto=http;by=203.0.113.43")
    ///     .body(())?;
    /// assert_eq!(ClientIp::behind_proxies(1).forwarded().key(&req), Some(IpAddr::from([192, 0, 2, 60])));
    /// # Ok::<(), http::Error>(())
    /// ```
    pub const fn forwarded(self) -> ClientIp {
        self.reading(ProxyHeader::Forwarded)
    }

    const fn reading(self, header: ProxyHeader) -> ClientIp {
        ClientIp {
            header: Some(header),
            proxies: self.proxies,
            ipv6_prefix: DEFAULT_IPV6_PREFIX,
        }
    }
}

// ===== impl ProxyHeader =====

impl ProxyHeader {
    /// The address in the `proxies`-th element from the right (`proxies >= 1`), if that
    /// element exists and names one.
    fn client(self, headers: &HeaderMap, proxies: usize) -> Option<IpAddr> {
        let (name, quoted) = match self {
            ProxyHeader::XForwardedFor => (X_FORWARDED_FOR, false),
            ProxyHeader::Forwarded => (FORWARDED, true),
        };
        // Lines are one list in order; the right end is the last line's end.
        let element = headers
            .get_all(name)
            .iter()
            .rev()
            .flat_map(|line| RevElements::new(line.as_bytes(), quoted))
            .map(trim)
            .filter(|element| !element.is_empty())
            .nth(proxies - 1)?;
        match self {
            ProxyHeader::XForwardedFor => node_ip(element),
            ProxyHeader::Forwarded => node_ip(forwarded_for(element)?),
        }
    }
}

const X_FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");

/// The comma-separated elements of one header line, last first. With `quoted`, commas
/// inside quoted strings do not separate: the scan runs from the right, so the elements
/// the trusted proxies appended are parsed before anything the client wrote, and an
/// unbalanced quote on the client's side cannot swallow them.
struct RevElements<'a> {
    rest: Option<&'a [u8]>,
    quoted: bool,
}

impl<'a> RevElements<'a> {
    fn new(line: &'a [u8], quoted: bool) -> Self {
        RevElements {
            rest: Some(line),
            quoted,
        }
    }
}

impl<'a> Iterator for RevElements<'a> {
    type Item = &'a [u8];

    fn next(&mut self) -> Option<&'a [u8]> {
        let line = self.rest?;
        let mut in_quotes = false;
        for i in (0..line.len()).rev() {
            match line[i] {
                // From the right, the first quote closes a string and the next unescaped
                // one opens it.
                b'"' if self.quoted && !(in_quotes && escaped(line, i)) => in_quotes = !in_quotes,
                b',' if !in_quotes => {
                    self.rest = Some(&line[..i]);
                    return Some(&line[i + 1..]);
                }
                _ => {}
            }
        }
        self.rest = None;
        Some(line)
    }
}

/// Whether the byte at `i` follows an odd number of backslashes (a quoted-pair).
fn escaped(line: &[u8], i: usize) -> bool {
    line[..i].iter().rev().take_while(|&&b| b == b'\\').count() % 2 == 1
}

fn trim(bytes: &[u8]) -> &[u8] {
    let is_ows = |b: &u8| *b == b' ' || *b == b'\t';
    let start = bytes.iter().position(|b| !is_ows(b)).unwrap_or(bytes.len());
    let end = bytes
        .iter()
        .rposition(|b| !is_ows(b))
        .map_or(start, |i| i + 1);
    &bytes[start..end]
}

/// The value of the `for` parameter of one `Forwarded` element, unquoted.
fn forwarded_for(element: &[u8]) -> Option<&[u8]> {
    // Parameters are `;`-separated; a proxy's own element is well formed, so a forward
    // scan that skips quoted strings finds its pairs.
    let mut in_quotes = false;
    let mut start = 0;
    for i in 0..=element.len() {
        match element.get(i) {
            Some(b'"') if !(in_quotes && escaped(element, i)) => in_quotes = !in_quotes,
            Some(b';') | None if !in_quotes || i == element.len() => {
                let pair = &element[start..i];
                start = i + 1;
                let Some(eq) = pair.iter().position(|&b| b == b'=') else {
                    continue;
                };
                if trim(&pair[..eq]).eq_ignore_ascii_case(b"for") {
                    return unquote(trim(&pair[eq + 1..]));
                }
            }
            _ => {}
        }
    }
    None
}

/// A token as is, or a quoted string without its quotes. An address never needs a
/// backslash, so a value with one is not an address.
fn unquote(value: &[u8]) -> Option<&[u8]> {
    let inner = match value {
        [b'"', inner @ .., b'"'] => inner,
        [b'"', ..] => return None,
        token => token,
    };
    (!inner.contains(&b'\\')).then_some(inner)
}

/// The address in a node: `192.0.2.1`, `192.0.2.1:4711`, `2001:db8::1`, `[2001:db8::1]`,
/// `[2001:db8::1]:4711` (ports, obfuscated or not, are ignored). `unknown`, obfuscated
/// identifiers (`_hidden`) and anything else are no address.
fn node_ip(node: &[u8]) -> Option<IpAddr> {
    let node = std::str::from_utf8(trim(node)).ok()?;
    if let Ok(ip) = node.parse::<IpAddr>() {
        return Some(ip);
    }
    if let Some(rest) = node.strip_prefix('[') {
        let (v6, after) = rest.split_once(']')?;
        if !(after.is_empty() || after.strip_prefix(':').is_some_and(is_port)) {
            return None;
        }
        return v6.parse::<Ipv6Addr>().ok().map(IpAddr::V6);
    }
    let (v4, port) = node.split_once(':')?;
    if !is_port(port) {
        return None;
    }
    v4.parse::<Ipv4Addr>().ok().map(IpAddr::V4)
}

/// RFC 7239's `node-port`: up to five digits, or `_` and an obfuscated identifier.
fn is_port(port: &str) -> bool {
    match port.strip_prefix('_') {
        Some(obfuscated) => {
            !obfuscated.is_empty()
                && obfuscated
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
        }
        None => (1..=5).contains(&port.len()) && port.bytes().all(|b| b.is_ascii_digit()),
    }
}

/// Reads a header's value as the key, for per-user or per-API-key limits: the header an
/// authentication layer in front sets (`x-user-id`), or the API key clients send.
///
/// The key is `Option<String>`: the value (bytes that are not UTF-8 replaced by `�`), or
/// `None` when the header is missing, empty or longer than [`max_len`](Self::max_len)
/// (default [`DEFAULT_MAX_LEN`]). `None` is one key that every such request shares: put
/// authentication in front of the layer if anonymous requests should not reach it, or
/// give them a budget of their own this way. The first line counts when a request repeats
/// the header. The length cap bounds what a key can cost in memory: a client can make up
/// as many values as it likes, and the map keeps up to its `max_keys` of them.
///
/// # Examples
///
/// ```
/// use palisade::keyed::axum::HeaderKey;
///
/// let api_key = HeaderKey::from_static("x-api-key");
/// let req = http::Request::builder().header("x-api-key", "k-123").body(())?;
/// assert_eq!(api_key.key(&req).as_deref(), Some("k-123"));
/// assert_eq!(api_key.key(&http::Request::new(())), None);
/// # Ok::<(), http::Error>(())
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HeaderKey {
    name: HeaderName,
    max_len: usize,
}

// ===== impl HeaderKey =====

impl HeaderKey {
    /// Keys requests by the value of header `name`.
    ///
    /// # Examples
    ///
    /// ```
    /// use palisade::keyed::axum::HeaderKey;
    ///
    /// let by_auth = HeaderKey::new(http::header::AUTHORIZATION);
    /// # let _ = by_auth;
    /// ```
    pub const fn new(name: HeaderName) -> Self {
        HeaderKey {
            name,
            max_len: DEFAULT_MAX_LEN,
        }
    }

    /// As [`new`](Self::new), naming the header with a static string.
    ///
    /// # Panics
    ///
    /// If `name` is not a valid lowercase header name, as
    /// [`HeaderName::from_static`] does.
    ///
    /// # Examples
    ///
    /// ```
    /// use palisade::keyed::axum::HeaderKey;
    ///
    /// let by_user = HeaderKey::from_static("x-user-id");
    /// # let _ = by_user;
    /// ```
    pub const fn from_static(name: &'static str) -> Self {
        HeaderKey::new(HeaderName::from_static(name))
    }

    /// The longest value used as a key, in bytes; longer values get the key `None`.
    /// Default [`DEFAULT_MAX_LEN`] (256); any value is accepted.
    ///
    /// # Examples
    ///
    /// ```
    /// use palisade::keyed::axum::HeaderKey;
    ///
    /// let api_key = HeaderKey::from_static("x-api-key").max_len(8);
    /// let req = http::Request::builder().header("x-api-key", "far-too-long").body(())?;
    /// assert_eq!(api_key.key(&req), None);
    /// # Ok::<(), http::Error>(())
    /// ```
    pub const fn max_len(mut self, bytes: usize) -> Self {
        self.max_len = bytes;
        self
    }

    /// The key of `req`: the header's value, or `None` (see the [type docs](Self)).
    /// Allocates the key's `String`.
    ///
    /// # Examples
    ///
    /// ```
    /// use palisade::keyed::axum::HeaderKey;
    ///
    /// let by_user = HeaderKey::from_static("x-user-id");
    /// let req = http::Request::builder().header("x-user-id", "").body(())?;
    /// assert_eq!(by_user.key(&req), None); // empty is missing
    /// # Ok::<(), http::Error>(())
    /// ```
    pub fn key<B>(&self, req: &Request<B>) -> Option<String> {
        let value = req.headers().get(&self.name)?.as_bytes();
        if value.is_empty() || value.len() > self.max_len {
            return None;
        }
        Some(String::from_utf8_lossy(value).into_owned())
    }

    /// This as a key function for [`KeyedLayer::new`](super::KeyedLayer::new) under axum
    /// (requests with axum's `Body`; for another body type, call [`key`](Self::key) from
    /// a closure of your own).
    ///
    /// # Examples
    ///
    /// ```
    /// use axum::{Router, routing::get};
    /// use palisade::LiftLayer;
    /// use palisade::bulkhead::Bulkhead;
    /// use palisade::http::ShedLayer;
    /// use palisade::keyed::axum::HeaderKey;
    /// use palisade::keyed::{Keyed, KeyedConfig, KeyedLayer};
    /// use tower::ServiceBuilder;
    ///
    /// // Two calls at a time per user; a third gets 429.
    /// let sessions = Keyed::new(
    ///     KeyedConfig::default(),
    ///     Bulkhead::new(Bulkhead::builder().name("sessions").max_concurrent(2).build()?),
    /// );
    /// let app: Router = Router::new().route("/", get(|| async { "hello" })).layer(
    ///     ServiceBuilder::new()
    ///         .layer(ShedLayer::new())
    ///         .layer(KeyedLayer::new(sessions, HeaderKey::from_static("x-user-id").key_fn()))
    ///         .layer(LiftLayer),
    /// );
    /// # Ok::<(), palisade::ConfigError>(())
    /// ```
    pub fn key_fn(self) -> impl Fn(&AxumRequest) -> Option<String> + Clone + Send + Sync + 'static {
        move |req: &AxumRequest| self.key(req)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(headers: &[(&str, &str)], peer: Option<&str>) -> Request<()> {
        let mut builder = Request::builder();
        for &(name, value) in headers {
            builder = builder.header(name, value);
        }
        let mut req = builder.body(()).unwrap();
        if let Some(peer) = peer {
            req.extensions_mut()
                .insert(ConnectInfo(peer.parse::<SocketAddr>().unwrap()));
        }
        req
    }

    fn ip(s: &str) -> Option<IpAddr> {
        Some(s.parse().unwrap())
    }

    const PEER: &str = "10.0.0.1:40000";

    fn xff(proxies: usize, values: &[&str]) -> Option<IpAddr> {
        let headers: Vec<_> = values.iter().map(|v| ("x-forwarded-for", *v)).collect();
        let req = request(&headers, Some(PEER));
        // Whole addresses: these tests are of the parsing.
        ClientIp::behind_proxies(proxies)
            .x_forwarded_for()
            .ipv6_prefix(128)
            .key(&req)
    }

    fn fwd(proxies: usize, values: &[&str]) -> Option<IpAddr> {
        let headers: Vec<_> = values.iter().map(|v| ("forwarded", *v)).collect();
        let req = request(&headers, Some(PEER));
        ClientIp::behind_proxies(proxies)
            .forwarded()
            .ipv6_prefix(128)
            .key(&req)
    }

    #[test]
    fn peer_reads_connect_info_and_ignores_forwarding_headers() {
        let req = request(
            &[("x-forwarded-for", "6.6.6.6"), ("forwarded", "for=6.6.6.6")],
            Some("192.0.2.7:1234"),
        );
        assert_eq!(ClientIp::peer().key(&req), ip("192.0.2.7"));
    }

    #[test]
    fn no_connect_info_and_no_header_is_the_none_key() {
        assert_eq!(ClientIp::peer().key(&request(&[], None)), None);
        let proxied = ClientIp::behind_proxies(1).x_forwarded_for();
        assert_eq!(proxied.key(&request(&[], None)), None);
        assert_eq!(
            proxied.key(&request(&[("x-forwarded-for", "1.2.3.4")], None)),
            ip("1.2.3.4"),
            "a usable header needs no connection info"
        );
    }

    #[test]
    fn x_forwarded_for_takes_the_entry_as_many_hops_from_the_right_as_trusted_proxies() {
        let chain = "6.6.6.6, 192.0.2.1, 198.51.100.2, 203.0.113.3";
        assert_eq!(xff(1, &[chain]), ip("203.0.113.3"));
        assert_eq!(xff(2, &[chain]), ip("198.51.100.2"));
        assert_eq!(xff(3, &[chain]), ip("192.0.2.1"));
        assert_eq!(
            xff(4, &[chain]),
            ip("6.6.6.6"),
            "all four trusted: the leftmost"
        );
    }

    #[test]
    fn the_client_written_leftmost_entry_is_never_the_key_when_proxies_appended() {
        // The client sent "6.6.6.6"; one proxy appended what it saw.
        assert_eq!(xff(1, &["6.6.6.6, 192.0.2.9"]), ip("192.0.2.9"));
        assert_eq!(fwd(1, &["for=6.6.6.6, for=192.0.2.9"]), ip("192.0.2.9"));
    }

    #[test]
    fn fewer_entries_than_trusted_proxies_fall_back_to_the_peer() {
        assert_eq!(xff(3, &["192.0.2.1, 198.51.100.2"]), ip("10.0.0.1"));
        assert_eq!(fwd(2, &["for=192.0.2.1"]), ip("10.0.0.1"));
    }

    #[test]
    fn a_missing_header_falls_back_to_the_peer() {
        assert_eq!(xff(1, &[]), ip("10.0.0.1"));
        assert_eq!(fwd(1, &[]), ip("10.0.0.1"));
    }

    #[test]
    fn zero_trusted_proxies_read_no_header() {
        assert_eq!(xff(0, &["6.6.6.6"]), ip("10.0.0.1"));
        assert_eq!(fwd(0, &["for=6.6.6.6"]), ip("10.0.0.1"));
    }

    #[test]
    fn garbage_at_the_chosen_entry_falls_back_to_the_peer_without_panicking() {
        for garbage in [
            "not-an-ip",
            "unknown",
            "1.2.3",
            "1.2.3.4.5",
            "[::1",
            "[::1]x",
            "::1]:80",
            ":",
            "[]",
            "1.2.3.4:",
            "1.2.3.4:123456",
            "1.2.3.4:8_0",
            "[::1]:",
            "fe80::1%eth0",
        ] {
            assert_eq!(xff(1, &[garbage]), ip("10.0.0.1"), "{garbage:?}");
            assert_eq!(
                fwd(1, &[&format!("for={garbage}")]),
                ip("10.0.0.1"),
                "{garbage:?}"
            );
        }
        for garbage in [
            "",
            ",",
            ";",
            "=",
            "for",
            "for=",
            "for=\"",
            "for=\"\\\"",
            "\"",
            "\"\"\"",
            "for=\"1.2.3.4",
            "for=\"1.2.3.4\\\"\"",
            "by=1.2.3.4",
        ] {
            assert_eq!(fwd(1, &[garbage]), ip("10.0.0.1"), "{garbage:?}");
        }
    }

    #[test]
    fn ports_are_ignored() {
        assert_eq!(xff(1, &["192.0.2.1:4711"]), ip("192.0.2.1"));
        assert_eq!(xff(1, &["[2001:db8::1]:4711"]), ip("2001:db8::1"));
        assert_eq!(xff(1, &["[2001:db8::1]"]), ip("2001:db8::1"));
        assert_eq!(fwd(1, &["for=192.0.2.1:4711"]), ip("192.0.2.1"));
        assert_eq!(fwd(1, &["for=\"192.0.2.1:_port\""]), ip("192.0.2.1"));
    }

    #[test]
    fn ipv6_is_read_bare_in_x_forwarded_for_and_bracketed_and_quoted_in_forwarded() {
        assert_eq!(xff(1, &["2001:db8::1"]), ip("2001:db8::1"));
        assert_eq!(xff(2, &["2001:db8::1, ::1"]), ip("2001:db8::1"));
        assert_eq!(fwd(1, &["for=\"[2001:db8::1]:4711\""]), ip("2001:db8::1"));
        assert_eq!(fwd(1, &["for=\"[2001:db8::1]\""]), ip("2001:db8::1"));
        assert_eq!(
            fwd(2, &["for=\"[2001:db8:cafe::17]:4711\", for=192.0.2.43"]),
            ip("2001:db8:cafe::17")
        );
    }

    #[test]
    fn forwarded_obfuscated_and_unknown_nodes_fall_back_to_the_peer() {
        assert_eq!(fwd(1, &["for=_hidden"]), ip("10.0.0.1"));
        assert_eq!(fwd(1, &["for=\"_SEVKISEK\""]), ip("10.0.0.1"));
        assert_eq!(fwd(1, &["for=unknown"]), ip("10.0.0.1"));
        // An obfuscated client further left does not matter.
        assert_eq!(fwd(1, &["for=_hidden, for=192.0.2.5"]), ip("192.0.2.5"));
    }

    #[test]
    fn forwarded_reads_the_for_parameter_among_others_in_any_case() {
        assert_eq!(
            fwd(1, &["proto=https;For=192.0.2.60;by=203.0.113.43"]),
            ip("192.0.2.60")
        );
        assert_eq!(fwd(1, &["by=203.0.113.43"]), ip("10.0.0.1"), "no for=");
        assert_eq!(
            fwd(1, &["host=\"a;for=6.6.6.6\";for=192.0.2.60"]),
            ip("192.0.2.60"),
            "a for= inside a quoted value is not the parameter"
        );
    }

    #[test]
    fn forwarded_commas_inside_quotes_do_not_split_elements() {
        // A trusted proxy's own element quotes a client-controlled host with a comma in it.
        assert_eq!(
            fwd(1, &["for=192.0.2.60;host=\"evil, for=6.6.6.6;x=\""]),
            ip("192.0.2.60")
        );
        assert_eq!(
            fwd(1, &["for=192.0.2.60;host=\"a\\\",b\""]),
            ip("192.0.2.60"),
            "an escaped quote stays inside the string"
        );
    }

    #[test]
    fn forwarded_an_unclosed_quote_from_the_client_cannot_swallow_the_proxies_elements() {
        // The client wrote `for=6.6.6.6, for="`; two proxies appended to the same line.
        let line = "for=6.6.6.6, for=\", for=192.0.2.1, for=198.51.100.2";
        assert_eq!(fwd(2, &[line]), ip("192.0.2.1"));
        assert_eq!(fwd(1, &[line]), ip("198.51.100.2"));
    }

    #[test]
    fn multiple_header_lines_are_one_list_in_order() {
        let lines = [
            "6.6.6.6, 192.0.2.1",
            "198.51.100.2",
            "203.0.113.3, 203.0.113.4",
        ];
        assert_eq!(xff(1, &lines), ip("203.0.113.4"));
        assert_eq!(xff(2, &lines), ip("203.0.113.3"));
        assert_eq!(xff(3, &lines), ip("198.51.100.2"));
        assert_eq!(xff(4, &lines), ip("192.0.2.1"));
        let lines = [
            "for=6.6.6.6",
            "for=192.0.2.1;proto=http",
            "for=198.51.100.2",
        ];
        assert_eq!(fwd(2, &lines), ip("192.0.2.1"));
    }

    #[test]
    fn empty_list_elements_and_whitespace_are_skipped() {
        assert_eq!(xff(2, &["192.0.2.1 ,, \t198.51.100.2 ,"]), ip("192.0.2.1"));
        assert_eq!(
            fwd(2, &[" for=192.0.2.1 , ,for=198.51.100.2"]),
            ip("192.0.2.1")
        );
    }

    #[test]
    fn non_utf8_entries_left_of_the_chosen_one_do_not_matter() {
        let value = http::HeaderValue::from_bytes(b"\xff\xfe, 192.0.2.1").unwrap();
        let mut req = request(&[], Some(PEER));
        req.headers_mut().insert(X_FORWARDED_FOR, value);
        let key = ClientIp::behind_proxies(1).x_forwarded_for().key(&req);
        assert_eq!(key, ip("192.0.2.1"));
        let key = ClientIp::behind_proxies(2).x_forwarded_for().key(&req);
        assert_eq!(key, ip("10.0.0.1"));
    }

    #[test]
    fn ipv4_mapped_ipv6_addresses_are_keyed_as_ipv4() {
        let req = request(&[], Some("[::ffff:192.0.2.7]:1234"));
        assert_eq!(ClientIp::peer().key(&req), ip("192.0.2.7"));
        assert_eq!(xff(1, &["::ffff:192.0.2.8"]), ip("192.0.2.8"));
    }

    #[test]
    fn an_ipv6_prefix_keys_a_network_and_leaves_ipv4_whole() {
        let req = request(&[], Some("[2001:db8:1:2:3:4:5:6]:1"));
        let by_64 = ClientIp::peer().ipv6_prefix(64);
        assert_eq!(by_64.key(&req), ip("2001:db8:1:2::"));
        assert_eq!(ClientIp::peer().ipv6_prefix(0).key(&req), ip("::"));
        assert_eq!(
            ClientIp::peer().ipv6_prefix(200).key(&req),
            ip("2001:db8:1:2:3:4:5:6")
        );
        assert_eq!(
            ClientIp::peer().key(&req),
            ip("2001:db8:1:2::"),
            "a /64 by default"
        );
        assert_eq!(
            ClientIp::behind_proxies(1).x_forwarded_for().key(&request(
                &[("x-forwarded-for", "2001:db8:9::1")],
                Some("[::1]:1")
            )),
            ip("2001:db8:9::"),
            "and behind proxies"
        );
        let v4 = request(&[], Some("192.0.2.7:1"));
        assert_eq!(by_64.key(&v4), ip("192.0.2.7"));
    }

    #[test]
    fn a_header_key_is_the_first_value_and_none_when_missing_empty_or_too_long() {
        let by_user = HeaderKey::from_static("x-user-id");
        let key = |headers: &[(&str, &str)]| by_user.key(&request(headers, None));
        assert_eq!(key(&[("x-user-id", "ada")]).as_deref(), Some("ada"));
        assert_eq!(
            key(&[("x-user-id", "ada"), ("x-user-id", "grace")]).as_deref(),
            Some("ada")
        );
        assert_eq!(key(&[]), None);
        assert_eq!(key(&[("x-user-id", "")]), None);
        let long = "x".repeat(DEFAULT_MAX_LEN + 1);
        assert_eq!(key(&[("x-user-id", &long)]), None);
        let exact = "x".repeat(DEFAULT_MAX_LEN);
        assert_eq!(key(&[("x-user-id", &exact)]).as_deref(), Some(&*exact));
    }

    #[test]
    fn a_header_key_that_is_not_utf8_is_kept_lossily() {
        let mut req = request(&[], None);
        req.headers_mut().insert(
            "x-api-key",
            http::HeaderValue::from_bytes(b"k\xff1").unwrap(),
        );
        let key = HeaderKey::from_static("x-api-key").key(&req);
        assert_eq!(key.as_deref(), Some("k\u{fffd}1"));
    }

    #[test]
    fn key_functions_are_clone_send_sync() {
        fn shareable<T: Clone + Send + Sync + 'static>(_: &T) {}
        shareable(&ClientIp::peer().key_fn());
        shareable(&ClientIp::behind_proxies(1).forwarded().key_fn());
        shareable(&HeaderKey::from_static("x-api-key").key_fn());
    }
}
