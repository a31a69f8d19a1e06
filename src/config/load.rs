//! Reading the sources: the TOML text, the environment, then path resolution and checks.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use config::{Config, Environment, File, FileFormat};

use super::{ConfigError, NodeConfig, one_line};

/// The configuration used when `run` gets no `--config`: `config/node.toml`, in which
/// every key is commented out, so all defaults apply.
pub const DEFAULT_CONFIG: &str = include_str!("../../config/node.toml");

/// Environment variables `DEMLS__SECTION__KEY` override the file.
pub const ENV_PREFIX: &str = "DEMLS";
/// Separator between prefix, section and key in environment variable names.
pub const ENV_SEPARATOR: &str = "__";

impl NodeConfig {
    /// Loads `path` (or the embedded default when `None`), applies the process
    /// environment's `DEMLS__*` overrides, resolves relative paths against the file's
    /// directory (the working directory for the default) and validates the result.
    pub fn load(path: Option<&Path>) -> Result<Self, ConfigError> {
        Self::load_with_env(path, None)
    }

    /// As [`NodeConfig::load`], with the environment given as a map (`None` reads the
    /// process environment). Tests use this to avoid touching the real environment.
    pub fn load_with_env(
        path: Option<&Path>,
        env: Option<HashMap<String, String>>,
    ) -> Result<Self, ConfigError> {
        match path {
            Some(p) => {
                let text = std::fs::read_to_string(p).map_err(|e| {
                    ConfigError::new(p.display().to_string(), format!("cannot read: {e}"))
                })?;
                let base = p
                    .parent()
                    .filter(|d| !d.as_os_str().is_empty())
                    .map(Path::to_path_buf)
                    .unwrap_or_else(|| PathBuf::from("."));
                Self::from_toml(&text, &p.display().to_string(), &base, env)
            }
            None => Self::from_toml(
                DEFAULT_CONFIG,
                "the built-in default config",
                Path::new("."),
                env,
            ),
        }
    }

    /// Parses TOML `text` (named `origin` in errors), applies environment overrides,
    /// resolves relative paths against `base_dir`, and validates.
    pub fn from_toml(
        text: &str,
        origin: &str,
        base_dir: &Path,
        env: Option<HashMap<String, String>>,
    ) -> Result<Self, ConfigError> {
        // Parse the file alone first, so a syntax error names the file rather than a key.
        toml_check(text, origin)?;
        let mut envsrc = Environment::with_prefix(ENV_PREFIX)
            .separator(ENV_SEPARATOR)
            .try_parsing(true);
        if let Some(map) = env {
            envsrc = envsrc.source(Some(map.into_iter().collect()));
        }
        let built = Config::builder()
            .add_source(File::from_str(text, FileFormat::Toml))
            .add_source(envsrc)
            .build()
            .map_err(|e| map_error(e, origin))?;
        // `static_shard` alone means static sharding; an explicit `sharding` wins.
        let sharding_given = built.get_string("waku.sharding").is_ok();
        let mut cfg: NodeConfig = built.try_deserialize().map_err(|e| map_error(e, origin))?;
        if !sharding_given && cfg.waku.static_shard.is_some() {
            cfg.waku.sharding = super::Sharding::Static;
        }
        cfg.resolve_paths(base_dir);
        cfg.validate()?;
        Ok(cfg)
    }

    fn resolve_paths(&mut self, base: &Path) {
        let fix = |p: &mut PathBuf| {
            if p.is_relative() {
                *p = base.join(&*p);
            }
        };
        fix(&mut self.storage.data_dir);
        for p in [
            &mut self.identity.key_file,
            &mut self.identity.keystore,
            &mut self.identity.keystore_password_file,
        ]
        .into_iter()
        .flatten()
        {
            fix(p);
        }
    }
}

fn toml_check(text: &str, origin: &str) -> Result<(), ConfigError> {
    Config::builder()
        .add_source(File::from_str(text, FileFormat::Toml))
        .build()
        .map(|_| ())
        .map_err(|e| match e {
            config::ConfigError::FileParse { cause, .. } => ConfigError::new(
                origin,
                format!("invalid TOML: {}", one_line(&cause.to_string())),
            ),
            other => map_error(other, origin),
        })
}

/// Turns the `config` crate's errors into one line naming the key.
fn map_error(e: config::ConfigError, origin: &str) -> ConfigError {
    use config::ConfigError as E;
    let from_env = |o: &Option<String>| {
        if o.as_deref() == Some("the environment") {
            " (from the environment)"
        } else {
            ""
        }
    };
    match e {
        E::Type {
            origin: o,
            unexpected,
            expected,
            key,
        } => ConfigError::new(
            key.unwrap_or_default(),
            format!("expected {expected}, found {unexpected}{}", from_env(&o)),
        ),
        E::At {
            error,
            origin: o,
            key,
        } => {
            let key = key.unwrap_or_default();
            let suffix = from_env(&o);
            match *error {
                E::Message(m) => message_error(&key, &m, suffix),
                E::NotFound(k) => {
                    ConfigError::new(normalize_key(&join(&key, &k)), "missing required key")
                }
                other => ConfigError::new(key, format!("{other}{suffix}")),
            }
        }
        E::NotFound(k) => ConfigError::new(normalize_key(&k), "missing required key"),
        E::Message(m) => message_error("", &m, ""),
        E::FileParse { cause, .. } => ConfigError::new(
            origin,
            format!("invalid TOML: {}", one_line(&cause.to_string())),
        ),
        other => ConfigError::new(origin, other.to_string()),
    }
}

/// The `config` crate writes `list[0]field` for a missing field of a list element.
fn normalize_key(k: &str) -> String {
    let mut out = String::with_capacity(k.len() + 2);
    let mut prev = '\0';
    for c in k.chars() {
        if prev == ']' && (c.is_alphanumeric() || c == '_') {
            out.push('.');
        }
        out.push(c);
        prev = c;
    }
    out
}

fn join(parent: &str, child: &str) -> String {
    if parent.is_empty() {
        child.to_string()
    } else {
        format!("{parent}.{child}")
    }
}

/// serde's `unknown field `x`, expected one of …` becomes `section.x: unknown key (…)`.
fn message_error(key: &str, m: &str, suffix: &str) -> ConfigError {
    if let Some(rest) = m.strip_prefix("unknown field `")
        && let Some((field, tail)) = rest.split_once('`')
    {
        let tail = tail.trim_start_matches(", ");
        let hint = if tail.is_empty() {
            String::new()
        } else {
            format!(" ({tail})")
        };
        return ConfigError::new(join(key, field), format!("unknown key{hint}{suffix}"));
    }
    if let Some(rest) = m.strip_prefix("unknown variant `")
        && let Some((v, tail)) = rest.split_once('`')
    {
        let tail = tail.trim_start_matches(", ");
        return ConfigError::new(key, format!("unknown value {v:?} ({tail}){suffix}"));
    }
    ConfigError::new(key, format!("{m}{suffix}"))
}
