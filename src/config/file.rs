//! Config files by path, and the text of each format.

use std::path::Path;

use super::Policies;
use crate::error::ConfigError;

/// The field of an error about the file as a whole, rather than one of its keys.
const WHOLE_FILE: &str = "<file>";

/// A config file's format, as its extension names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Format {
    Toml,
    Yaml,
    Json,
}

impl Format {
    /// The format `path`'s extension names, if its feature is on.
    fn of(path: &Path) -> Result<Format, ConfigError> {
        let extension = path.extension().map(|e| e.to_string_lossy());
        let format = match extension.as_deref() {
            Some(e) if e.eq_ignore_ascii_case("toml") => Format::Toml,
            Some(e) if e.eq_ignore_ascii_case("yaml") || e.eq_ignore_ascii_case("yml") => {
                Format::Yaml
            }
            Some(e) if e.eq_ignore_ascii_case("json") => Format::Json,
            Some(e) => {
                return Err(ConfigError::new(
                    WHOLE_FILE,
                    "must end in .toml, .yaml, .yml or .json (its extension names its format)",
                    format_args!("extension {e:?}"),
                ));
            }
            None => {
                return Err(ConfigError::new(
                    WHOLE_FILE,
                    "must end in .toml, .yaml, .yml or .json (its extension names its format)",
                    format_args!("no extension"),
                ));
            }
        };
        if !format.enabled() {
            return Err(format.disabled());
        }
        Ok(format)
    }

    fn enabled(self) -> bool {
        match self {
            Format::Toml => cfg!(feature = "toml"),
            Format::Yaml => cfg!(feature = "yaml"),
            Format::Json => cfg!(feature = "json"),
        }
    }

    /// The error for a file whose format's feature is off.
    #[cold]
    fn disabled(self) -> ConfigError {
        let (name, feature) = match self {
            Format::Toml => ("TOML", "toml"),
            Format::Yaml => ("YAML", "yaml"),
            Format::Json => ("JSON", "json"),
        };
        ConfigError::new(
            WHOLE_FILE,
            format!("is {name}, which needs palisade's `{feature}` feature (it is off)"),
            format_args!("a {name} file"),
        )
    }

    fn parse(self, text: &str) -> Result<Policies, ConfigError> {
        match self {
            #[cfg(feature = "toml")]
            Format::Toml => Policies::from_toml_str(text),
            #[cfg(feature = "yaml")]
            Format::Yaml => Policies::from_yaml_str(text),
            #[cfg(feature = "json")]
            Format::Json => Policies::from_json_str(text),
            #[allow(unreachable_patterns)]
            _ => {
                let _ = text;
                Err(self.disabled())
            }
        }
    }
}

impl Policies {
    /// Reads named policies from the file at `path`, in the format its extension names:
    /// `.toml` (feature `toml`), `.yaml` or `.yml` (feature `yaml`), `.json` (feature
    /// `json`), in any case.
    ///
    /// # Errors
    ///
    /// A [`ConfigError`] whose [`file`](ConfigError::file) is `path` (the message starts
    /// with it): the file cannot be read (the I/O error is the value), its extension names no
    /// format or one whose feature is off (the rule says which feature), or its content is
    /// refused as by [`from_toml_str`](Self::from_toml_str) and the others, with the key's
    /// path as the field. An error about the file as a whole has the field `<file>`.
    ///
    /// # Examples
    ///
    /// ```
    /// # #[cfg(feature = "toml")]
    /// # fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// use palisade::config::Policies;
    ///
    /// let path = std::env::temp_dir().join(format!("palisade-doc-{}.toml", std::process::id()));
    /// std::fs::write(&path, "[bulkhead.db]\nmax_concurrent = 0\n")?;
    /// let err = Policies::from_path(&path).unwrap_err();
    /// std::fs::remove_file(&path)?;
    /// assert_eq!(err.file(), Some(path.as_path()));
    /// assert_eq!(err.field(), "bulkhead.db.max_concurrent");
    /// assert!(err.to_string().starts_with(&*path.to_string_lossy()));
    ///
    /// let err = Policies::from_path("policies.ini").unwrap_err();
    /// assert_eq!(err.field(), "<file>");
    /// # Ok(())
    /// # }
    /// # #[cfg(not(feature = "toml"))] fn main() {}
    /// ```
    pub fn from_path(path: impl AsRef<Path>) -> Result<Self, ConfigError> {
        let path = path.as_ref();
        let read = || {
            // The extension first: a wrong one is an error whether the file exists or not.
            let format = Format::of(path)?;
            let text = std::fs::read_to_string(path)
                .map_err(|e| ConfigError::new(WHOLE_FILE, "cannot be read", format_args!("{e}")))?;
            format.parse(&text)
        };
        read().map_err(|e| e.in_file(path))
    }

    /// Reads named policies from the text of a TOML file.
    ///
    /// # Errors
    ///
    /// As [`load`](Self::load), with the field `<file>` and the rule "is not valid TOML" for a
    /// syntax error. The TOML error is told in one line, its message then its line and column
    /// (`unknown field ... (line 2, column 1)`), without the file's text.
    ///
    /// # Examples
    ///
    /// ```
    /// use palisade::config::Policies;
    ///
    /// let policies = Policies::from_toml_str("[timeout.search]\nduration = \"800ms\"\n")?;
    /// assert_eq!(policies.timeout["search"].duration().as_millis(), 800);
    ///
    /// let err = Policies::from_toml_str("[timeout.search\nduration = \"800ms\"\n").unwrap_err();
    /// assert_eq!((err.field(), err.rule()), ("<file>", "is not valid TOML"));
    /// assert!(err.value().contains("line 1, column"), "{err}");
    /// # Ok::<(), palisade::ConfigError>(())
    /// ```
    #[cfg(feature = "toml")]
    #[cfg_attr(docsrs, doc(cfg(feature = "toml")))]
    pub fn from_toml_str(text: &str) -> Result<Self, ConfigError> {
        let document = toml::Deserializer::parse(text).map_err(|e| {
            ConfigError::new(
                WHOLE_FILE,
                "is not valid TOML",
                format_args!("{}", toml_message(&e, text)),
            )
        })?;
        Self::load_with(document, |e, _| toml_message(e, text))
    }

    /// Reads named policies from the text of a YAML file (one document).
    ///
    /// # Errors
    ///
    /// As [`load`](Self::load): the YAML error (a syntax error too) is the value, with its
    /// line and column.
    ///
    /// # Examples
    ///
    /// ```
    /// use palisade::config::Policies;
    ///
    /// let file = "retry:\n  api:\n    max_attempts: 4\n";
    /// assert_eq!(Policies::from_yaml_str(file)?.retry["api"].max_attempts(), 4);
    ///
    /// let err = Policies::from_yaml_str("retry:\n  api:\n    max_attempts: 0\n").unwrap_err();
    /// assert_eq!(err.field(), "retry.api.max_attempts");
    /// # Ok::<(), palisade::ConfigError>(())
    /// ```
    #[cfg(feature = "yaml")]
    #[cfg_attr(docsrs, doc(cfg(feature = "yaml")))]
    pub fn from_yaml_str(text: &str) -> Result<Self, ConfigError> {
        Self::load_with(serde_norway::Deserializer::from_str(text), |e, path| {
            let message = e.to_string();
            one_line(without_yaml_path(&message, path))
        })
    }

    /// Reads named policies from the text of a JSON file.
    ///
    /// # Errors
    ///
    /// As [`load`](Self::load): the JSON error (a syntax error, or text after the document,
    /// too) is the value, with its line and column.
    ///
    /// # Examples
    ///
    /// ```
    /// use palisade::config::Policies;
    ///
    /// let file = r#"{ "bulkhead": { "db": { "max_concurrent": 4 } } }"#;
    /// assert_eq!(Policies::from_json_str(file)?.bulkhead["db"].max_concurrent(), 4);
    ///
    /// let err = Policies::from_json_str(r#"{ "bulkhead": { "db": { "max_concurrent": 4 } } } }"#)
    ///     .unwrap_err();
    /// assert!(err.value().contains("trailing characters"), "{err}");
    /// # Ok::<(), palisade::ConfigError>(())
    /// ```
    #[cfg(feature = "json")]
    #[cfg_attr(docsrs, doc(cfg(feature = "json")))]
    pub fn from_json_str(text: &str) -> Result<Self, ConfigError> {
        let mut deserializer = serde_json::Deserializer::from_str(text);
        let policies = Self::load_with(&mut deserializer, |e, _| one_line(&e.to_string()))?;
        // What `serde_json::from_str` checks too: nothing but whitespace after the document.
        deserializer
            .end()
            .map_err(|e| ConfigError::new(WHOLE_FILE, "cannot be read", format_args!("{e}")))?;
        Ok(policies)
    }
}

/// A TOML error in one line: its message, then its line and column in `text`. Not its
/// `Display`, which quotes the lines around the error.
#[cfg(feature = "toml")]
fn toml_message(e: &toml::de::Error, text: &str) -> String {
    let message = one_line(e.message());
    match e.span() {
        Some(span) => {
            let (line, column) = line_column(text, span.start);
            format!("{message} (line {line}, column {column})")
        }
        None => message,
    }
}

/// A format's message on one line.
#[cfg_attr(
    not(any(feature = "toml", feature = "yaml", feature = "json")),
    allow(dead_code)
)]
fn one_line(message: &str) -> String {
    message
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .collect::<Vec<_>>()
        .join("; ")
}

/// A YAML error's message without the path it starts with (`retry.r: unknown field ...`):
/// the error's field names the key already.
#[cfg(feature = "yaml")]
fn without_yaml_path<'m>(message: &'m str, path: &serde_path_to_error::Path) -> &'m str {
    use serde_path_to_error::Segment;

    let Some((head, rest)) = message.split_once(": ") else {
        return message;
    };
    // The key path as the YAML error spells it, raw keys joined by dots.
    let mut raw = String::new();
    for segment in path.iter() {
        match segment {
            Segment::Seq { index } => raw.push_str(&format!("[{index}]")),
            Segment::Map { key } => {
                if !raw.is_empty() {
                    raw.push('.');
                }
                raw.push_str(key);
            }
            _ => break,
        }
    }
    let is_prefix = raw
        .strip_prefix(head)
        .is_some_and(|after| after.is_empty() || after.starts_with(['.', '[']));
    if is_prefix && !head.is_empty() {
        rest
    } else {
        message
    }
}

/// The line and column (both from 1, the column in characters) of the byte `offset` in
/// `text`.
#[cfg(feature = "toml")]
fn line_column(text: &str, offset: usize) -> (usize, usize) {
    let (mut line, mut column) = (1, 1);
    for (i, c) in text.char_indices() {
        if i >= offset {
            break;
        }
        if c == '\n' {
            (line, column) = (line + 1, 1);
        } else {
            column += 1;
        }
    }
    (line, column)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_extension_names_the_format_in_any_case() {
        for (path, format) in [
            ("a.toml", Format::Toml),
            ("dir.d/a.TOML", Format::Toml),
            ("a.yaml", Format::Yaml),
            ("a.yml", Format::Yaml),
            ("a.Json", Format::Json),
        ] {
            match Format::of(Path::new(path)) {
                Ok(found) => assert_eq!(found, format, "{path}"),
                Err(e) => assert!(!format.enabled() && e.rule().contains("feature"), "{e}"),
            }
        }
        for path in ["a.ini", "toml", "a.toml.bak", ".toml"] {
            let err = Format::of(Path::new(path)).unwrap_err();
            assert!(err.rule().contains(".toml, .yaml, .yml or .json"), "{err}");
        }
    }

    #[cfg(feature = "yaml")]
    #[test]
    fn a_yaml_message_loses_the_path_the_field_names() {
        let err = Policies::from_yaml_str("retry:\n  r:\n    max_atempts: 3\n").unwrap_err();
        assert!(
            err.value().starts_with("unknown field `max_atempts`"),
            "{err}"
        );
        let err = Policies::from_yaml_str("retry:\n  r:\n    max_attempts: x\n").unwrap_err();
        assert!(err.value().starts_with("invalid type: string"), "{err}");
        assert!(err.value().ends_with("at line 3 column 19"), "{err}");
    }

    #[cfg(feature = "toml")]
    #[test]
    fn line_and_column_count_characters_from_one() {
        let text = "ab\ncé\nd";
        assert_eq!(line_column(text, 0), (1, 1));
        assert_eq!(line_column(text, 3), (2, 1));
        assert_eq!(line_column(text, 6), (2, 3), "é is one column");
        assert_eq!(line_column(text, 100), (3, 2), "past the end");
    }
}
