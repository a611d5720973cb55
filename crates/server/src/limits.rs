//! What one client may ask for: a rate per key (REST requests per user,
//! Socket.IO handshakes per client IP), and who the client is when it
//! comes through a load balancer.

use std::hash::Hash;
use std::net::IpAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use consultd_domain::{TokenBucket, UserId};
use dashmap::DashMap;
use http::HeaderMap;
use ipnet::IpNet;

/// Per-client limits (CONTRACT §2: one abusive client never disturbs another).
pub struct Limits {
    /// REST requests per user.
    pub rest: KeyedLimiter<UserId>,
    /// Socket.IO handshakes and PeerJS connects per client IP.
    pub handshakes: KeyedLimiter<IpAddr>,
    /// Client networks without a handshake rate.
    pub exempt: Networks,
    /// Proxies whose `X-Forwarded-For` is believed.
    pub trusted: Networks,
}

impl Limits {
    /// Whether a client at `peer` (through `headers`, if a trusted proxy)
    /// may open one more connection now.
    pub fn may_connect(&self, peer: IpAddr, headers: &HeaderMap) -> bool {
        let ip = client_ip(peer, headers, &self.trusted);
        self.exempt.contains(ip) || self.handshakes.try_take(&ip, Instant::now())
    }
}

/// Keys whose buckets are refilled are forgotten every this many checks,
/// so the map holds only the keys that are busy now.
const PRUNE_EVERY: u64 = 4096;

/// A token bucket per key (a user, an IP address).
pub struct KeyedLimiter<K: Hash + Eq> {
    per_second: u32,
    burst: u32,
    buckets: DashMap<K, TokenBucket>,
    checks: AtomicU64,
}

impl<K: Hash + Eq + Clone> KeyedLimiter<K> {
    /// A zero rate or burst lets everything through.
    pub fn new(per_second: u32, burst: u32) -> Self {
        Self {
            per_second,
            burst,
            buckets: DashMap::new(),
            checks: AtomicU64::new(0),
        }
    }

    fn unlimited(&self) -> bool {
        self.per_second == 0 || self.burst == 0
    }

    /// Takes one token from `key`'s bucket; `false` when it is empty.
    pub fn try_take(&self, key: &K, now: Instant) -> bool {
        if self.unlimited() {
            return true;
        }
        let allowed = match self.buckets.get_mut(key) {
            Some(mut bucket) => bucket.try_take(now),
            None => self
                .buckets
                .entry(key.clone())
                .or_insert_with(|| TokenBucket::new(self.per_second, self.burst, now))
                .try_take(now),
        };
        if self.checks.fetch_add(1, Ordering::Relaxed) % PRUNE_EVERY == PRUNE_EVERY - 1 {
            self.buckets.retain(|_, b| !b.is_full(now));
        }
        allowed
    }

    /// Keys with a bucket now (for tests).
    pub fn tracked(&self) -> usize {
        self.buckets.len()
    }
}

/// Networks from a comma-separated setting of IPs and CIDRs.
#[derive(Debug, Clone, Default)]
pub struct Networks(Vec<IpNet>);

impl Networks {
    /// `setting` is the setting's name, for the error.
    pub fn parse(raw: &str, setting: &str) -> Result<Self, String> {
        raw.split(',')
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(|s| {
                s.parse::<IpNet>()
                    .or_else(|_| s.parse::<IpAddr>().map(IpNet::from))
                    .map_err(|_| format!("{setting}: `{s}` is not an IP address or CIDR"))
            })
            .collect::<Result<_, _>>()
            .map(Self)
    }

    pub fn contains(&self, ip: IpAddr) -> bool {
        let ip = ip.to_canonical();
        self.0.iter().any(|net| net.contains(&ip))
    }
}

/// The client's address: the peer's, unless the peer is a trusted proxy;
/// then the rightmost `X-Forwarded-For` entry that is not itself a trusted
/// proxy (entries left of it could have been written by the client).
pub fn client_ip(peer: IpAddr, headers: &HeaderMap, trusted: &Networks) -> IpAddr {
    let mut client = peer.to_canonical();
    if !trusted.contains(client) {
        return client;
    }
    let entries: Vec<&str> = headers
        .get_all("x-forwarded-for")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(str::trim)
        .collect();
    for entry in entries.iter().rev() {
        match entry.parse::<IpAddr>() {
            Ok(ip) => {
                client = ip.to_canonical();
                if !trusted.contains(client) {
                    break;
                }
            }
            // A garbled entry: nothing left of it can be believed.
            Err(_) => break,
        }
    }
    client
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[test]
    fn each_key_has_its_own_bucket_and_refilled_ones_are_forgotten() {
        let t0 = Instant::now();
        let limiter = KeyedLimiter::new(1, 2);
        assert!(limiter.try_take(&"a", t0));
        assert!(limiter.try_take(&"a", t0));
        assert!(!limiter.try_take(&"a", t0), "a's burst is spent");
        assert!(limiter.try_take(&"b", t0), "b is not a");
        assert!(
            limiter.try_take(&"a", t0 + Duration::from_secs(1)),
            "refilled"
        );
        let later = t0 + Duration::from_secs(10);
        for i in 0..PRUNE_EVERY {
            limiter.try_take(&"c", later + Duration::from_secs(i));
        }
        assert_eq!(limiter.tracked(), 1, "only the busy key is kept");
        let open = KeyedLimiter::new(0, 10);
        assert!((0..1000).all(|_| open.try_take(&"a", t0)));
    }

    #[test]
    fn networks_parse_ips_and_cidrs_and_refuse_garbage() {
        let n = Networks::parse("10.0.0.0/8, 192.168.1.7,::1", "TRUSTED_PROXIES").unwrap();
        assert!(n.contains("10.1.2.3".parse().unwrap()));
        assert!(n.contains("192.168.1.7".parse().unwrap()));
        assert!(!n.contains("192.168.1.8".parse().unwrap()));
        assert!(n.contains("::1".parse().unwrap()));
        assert!(n.contains("::ffff:10.0.0.1".parse().unwrap()), "v4-mapped");
        assert!(Networks::parse("", "X").unwrap().0.is_empty());
        let err = Networks::parse("10.0.0.0/8,nope", "TRUSTED_PROXIES").unwrap_err();
        assert!(
            err.contains("TRUSTED_PROXIES") && err.contains("nope"),
            "{err}"
        );
    }

    #[test]
    fn forwarded_for_is_believed_only_from_trusted_proxies() {
        let trusted = Networks::parse("10.0.0.0/8", "T").unwrap();
        let mut h = HeaderMap::new();
        h.insert(
            "x-forwarded-for",
            "6.6.6.6, 1.2.3.4, 10.0.0.2".parse().unwrap(),
        );
        let proxy: IpAddr = "10.0.0.1".parse().unwrap();
        let stranger: IpAddr = "8.8.8.8".parse().unwrap();
        assert_eq!(
            client_ip(proxy, &h, &trusted),
            "1.2.3.4".parse::<IpAddr>().unwrap()
        );
        assert_eq!(client_ip(stranger, &h, &trusted), stranger, "not a proxy");
        assert_eq!(client_ip(proxy, &HeaderMap::new(), &trusted), proxy);
        let mut garbled = HeaderMap::new();
        garbled.insert("x-forwarded-for", "1.2.3.4, junk".parse().unwrap());
        assert_eq!(client_ip(proxy, &garbled, &trusted), proxy);
    }
}
