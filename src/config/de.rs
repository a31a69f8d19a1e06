//! Field deserializers that give one-line, user-actionable messages. The `config` crate
//! adds the key path around them (`protocol.freeze`, `waku.bootstrap[1]`, …).

use std::fmt;
use std::marker::PhantomData;
use std::str::FromStr;
use std::time::Duration;

use libp2p::Multiaddr;
use serde::Deserializer;
use serde::de::{self, SeqAccess, Visitor};

/// A humantime duration string (`"30s"`, `"1m 30s"`, `"250ms"`).
pub(crate) fn duration<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
    struct V;
    impl Visitor<'_> for V {
        type Value = Duration;
        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("a duration such as \"30s\" or \"1m 30s\"")
        }
        fn visit_str<E: de::Error>(self, s: &str) -> Result<Duration, E> {
            humantime::parse_duration(s.trim())
                .map_err(|e| E::custom(format!("invalid duration {s:?}: {e}")))
        }
        fn visit_i64<E: de::Error>(self, v: i64) -> Result<Duration, E> {
            Err(E::custom(format!(
                "invalid duration {v}: give a unit, e.g. \"{v}s\" or \"{v}ms\""
            )))
        }
        fn visit_u64<E: de::Error>(self, v: u64) -> Result<Duration, E> {
            self.visit_i64(v as i64)
        }
        fn visit_f64<E: de::Error>(self, v: f64) -> Result<Duration, E> {
            Err(E::custom(format!(
                "invalid duration {v}: give a unit, e.g. \"{v}s\""
            )))
        }
    }
    d.deserialize_any(V)
}

/// A list given either as a sequence or as one comma-separated string (the form an
/// environment variable takes). Empty items are skipped, so `""` is the empty list.
pub(crate) fn list<'de, D, T>(d: D) -> Result<Vec<T>, D::Error>
where
    D: Deserializer<'de>,
    T: FromStr,
    T::Err: fmt::Display,
{
    struct V<T>(PhantomData<T>);

    fn item<T: FromStr, E: de::Error>(s: &str) -> Result<Option<T>, E>
    where
        T::Err: fmt::Display,
    {
        let s = s.trim();
        if s.is_empty() {
            return Ok(None);
        }
        s.parse::<T>()
            .map(Some)
            .map_err(|e| E::custom(format!("invalid value {s:?}: {e}")))
    }

    impl<'de, T: FromStr> Visitor<'de> for V<T>
    where
        T::Err: fmt::Display,
    {
        type Value = Vec<T>;
        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("a list, or a comma-separated string")
        }
        fn visit_str<E: de::Error>(self, s: &str) -> Result<Vec<T>, E> {
            let mut out = Vec::new();
            for part in s.split(',') {
                if let Some(v) = item(part)? {
                    out.push(v);
                }
            }
            Ok(out)
        }
        fn visit_i64<E: de::Error>(self, v: i64) -> Result<Vec<T>, E> {
            self.visit_str(&v.to_string())
        }
        fn visit_u64<E: de::Error>(self, v: u64) -> Result<Vec<T>, E> {
            self.visit_str(&v.to_string())
        }
        fn visit_unit<E: de::Error>(self) -> Result<Vec<T>, E> {
            Ok(Vec::new())
        }
        fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Vec<T>, A::Error> {
            let mut out = Vec::new();
            while let Some(v) = seq.next_element::<ListItem>()? {
                let s = match v {
                    ListItem::S(s) => s,
                    ListItem::I(i) => i.to_string(),
                };
                if let Some(v) = item(&s)? {
                    out.push(v);
                }
            }
            Ok(out)
        }
    }
    d.deserialize_any(V(PhantomData))
}

/// A list element as the config layer may hand it over.
#[derive(serde::Deserialize)]
#[serde(untagged)]
enum ListItem {
    S(String),
    I(i64),
}

/// A multiaddr wrapper with a message that says what a multiaddr looks like.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Addr(pub Multiaddr);

impl FromStr for Addr {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        if !s.starts_with('/') {
            return Err("not a multiaddr (expected e.g. \"/ip4/127.0.0.1/tcp/60000\")".into());
        }
        Multiaddr::from_str(s).map(Addr).map_err(|e| e.to_string())
    }
}

/// A list of multiaddrs (`list` of [`Addr`], unwrapped).
pub(crate) fn multiaddrs<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<Multiaddr>, D::Error> {
    Ok(list::<D, Addr>(d)?.into_iter().map(|a| a.0).collect())
}

/// An `IP:port` socket address.
pub(crate) fn socket_addr<'de, D: Deserializer<'de>>(
    d: D,
) -> Result<std::net::SocketAddr, D::Error> {
    let s = <String as serde::Deserialize>::deserialize(d)?;
    s.trim().parse().map_err(|_| {
        de::Error::custom(format!(
            "invalid address {s:?}: expected IP:PORT such as \"127.0.0.1:8645\""
        ))
    })
}

/// An optional `IP:port` socket address (absent or `""`: none).
pub(crate) fn opt_socket_addr<'de, D: Deserializer<'de>>(
    d: D,
) -> Result<Option<std::net::SocketAddr>, D::Error> {
    let s = <Option<String> as serde::Deserialize>::deserialize(d)?;
    match s.as_deref().map(str::trim) {
        None | Some("") => Ok(None),
        Some(t) => t.parse().map(Some).map_err(|_| {
            de::Error::custom(format!(
                "invalid address {t:?}: expected IP:PORT such as \"127.0.0.1:8008\""
            ))
        }),
    }
}

/// An optional IP address (`"203.0.113.7"`, `"2001:db8::1"`).
pub(crate) fn opt_ip<'de, D: Deserializer<'de>>(
    d: D,
) -> Result<Option<std::net::IpAddr>, D::Error> {
    let s = <Option<String> as serde::Deserialize>::deserialize(d)?;
    match s.as_deref().map(str::trim) {
        None | Some("") => Ok(None),
        Some(t) => t.parse().map(Some).map_err(|_| {
            de::Error::custom(format!(
                "invalid IP address {t:?}: expected e.g. \"203.0.113.7\""
            ))
        }),
    }
}
