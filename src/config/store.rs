//! `[store]`: the Waku message archive and 13/WAKU2-STORE (see `docs/CONFIG.md`).

use std::time::Duration;

use serde::{Deserialize, Deserializer, de};

use super::ConfigError;

/// `[store]`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct StoreConfig {
    /// Archive our conversations' Waku messages, serve them to peers over
    /// 13/WAKU2-STORE, and fetch what we missed from peers. Default true.
    pub enabled: bool,
    /// Messages older than this (by their timestamp) are pruned, and no history fetch
    /// reaches further back. Default 7 days.
    #[serde(deserialize_with = "super::de::duration")]
    pub max_age: Duration,
    /// The archive's encoded messages are kept under this many bytes, the oldest pruned
    /// first (`"256MiB"`, `"1GB"`, or a number of bytes). Default 256 MiB.
    #[serde(deserialize_with = "byte_size")]
    pub max_bytes: u64,
}

/// The default of `store.max_age`.
pub const DEFAULT_MAX_AGE: Duration = Duration::from_secs(7 * 24 * 3600);
/// The default of `store.max_bytes`.
pub const DEFAULT_MAX_BYTES: u64 = 256 * 1024 * 1024;
/// The least `store.max_bytes`: room for a few of the largest messages.
pub const MIN_MAX_BYTES: u64 = 1024 * 1024;

impl Default for StoreConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            max_age: DEFAULT_MAX_AGE,
            max_bytes: DEFAULT_MAX_BYTES,
        }
    }
}

impl StoreConfig {
    pub(crate) fn validate(&self) -> Result<(), ConfigError> {
        if self.max_age < Duration::from_secs(1) {
            return Err(ConfigError::new("store.max_age", "must be at least 1s"));
        }
        if self.max_bytes < MIN_MAX_BYTES {
            return Err(ConfigError::new(
                "store.max_bytes",
                format!(
                    "must be at least 1MiB ({MIN_MAX_BYTES} bytes), not {}",
                    self.max_bytes
                ),
            ));
        }
        Ok(())
    }
}

/// `"256MiB"`, `"256 MiB"`, `"1GB"`, `"512k"`, `"1048576"` or a number: bytes. Binary
/// units (KiB, MiB, GiB) are powers of 1024, decimal ones (kB/KB/k, MB/M, GB/G) of 1000.
pub fn parse_byte_size(s: &str) -> Result<u64, String> {
    let t = s.trim();
    let split = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
    let (num, unit) = t.split_at(split);
    let n: u64 = num
        .parse()
        .map_err(|_| format!("invalid size {s:?}: expected a number of bytes, e.g. \"256MiB\""))?;
    let mult: u64 = match unit.trim() {
        "" | "B" | "b" => 1,
        "k" | "K" | "kB" | "KB" => 1000,
        "KiB" | "Ki" => 1 << 10,
        "M" | "MB" => 1_000_000,
        "MiB" | "Mi" => 1 << 20,
        "G" | "GB" => 1_000_000_000,
        "GiB" | "Gi" => 1 << 30,
        "T" | "TB" => 1_000_000_000_000,
        "TiB" | "Ti" => 1 << 40,
        u => {
            return Err(format!(
                "invalid size {s:?}: unknown unit {u:?} (B, kB, KiB, MB, MiB, GB, GiB, TB, TiB)"
            ));
        }
    };
    n.checked_mul(mult)
        .ok_or_else(|| format!("invalid size {s:?}: too large"))
}

fn byte_size<'de, D: Deserializer<'de>>(d: D) -> Result<u64, D::Error> {
    struct V;
    impl de::Visitor<'_> for V {
        type Value = u64;
        fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.write_str("a size such as \"256MiB\", or a number of bytes")
        }
        fn visit_str<E: de::Error>(self, s: &str) -> Result<u64, E> {
            parse_byte_size(s).map_err(E::custom)
        }
        fn visit_u64<E: de::Error>(self, v: u64) -> Result<u64, E> {
            Ok(v)
        }
        fn visit_i64<E: de::Error>(self, v: i64) -> Result<u64, E> {
            u64::try_from(v).map_err(|_| E::custom(format!("invalid size {v}: negative")))
        }
    }
    d.deserialize_any(V)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn byte_sizes() {
        assert_eq!(parse_byte_size("256MiB"), Ok(256 << 20));
        assert_eq!(parse_byte_size(" 256 MiB "), Ok(256 << 20));
        assert_eq!(parse_byte_size("1GB"), Ok(1_000_000_000));
        assert_eq!(parse_byte_size("512k"), Ok(512_000));
        assert_eq!(parse_byte_size("1048576"), Ok(1 << 20));
        assert!(
            parse_byte_size("12 parsecs")
                .unwrap_err()
                .contains("unknown unit")
        );
        assert!(parse_byte_size("MiB").is_err());
        assert!(
            parse_byte_size("99999999999TiB")
                .unwrap_err()
                .contains("too large")
        );
    }
}
