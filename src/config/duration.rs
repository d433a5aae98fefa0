//! Durations in config files: a number and a unit, `"250ms"`, `"1.5s"`, `"2m"`.

use std::fmt::Write;
use std::time::Duration;

use serde::de::{self, Deserializer, Visitor};
use serde::{Deserialize, Serializer};

const UNITS: [(&str, u128); 6] = [
    ("h", 3_600_000_000_000),
    ("m", 60_000_000_000),
    ("s", 1_000_000_000),
    ("ms", 1_000_000),
    ("us", 1_000),
    ("ns", 1),
];

/// Parses `"<number><unit>"`, unit one of `ns`, `us`, `ms`, `s`, `m`, `h`; the number may
/// have a fractional part (`"1.5s"`) as long as the result is a whole number of nanoseconds.
pub(crate) fn parse(text: &str) -> Result<Duration, String> {
    let text = text.trim();
    let split = text
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .ok_or_else(|| format!("{text:?} has no unit (ns, us, ms, s, m, h)"))?;
    let (number, unit) = text.split_at(split);
    let per_unit = UNITS
        .iter()
        .find(|(name, _)| *name == unit.trim())
        .map(|&(_, ns)| ns)
        .ok_or_else(|| format!("{text:?}: unknown unit {unit:?} (ns, us, ms, s, m, h)"))?;
    let (whole, fraction) = number.split_once('.').unwrap_or((number, ""));
    if whole.is_empty() && fraction.is_empty() {
        return Err(format!("{text:?} has no number"));
    }
    let digits = |s: &str| -> Result<u128, String> {
        if s.is_empty() {
            return Ok(0);
        }
        s.parse::<u128>()
            .map_err(|_| format!("{text:?} is not a number followed by a unit"))
    };
    // Exact arithmetic in nanoseconds: "0.1s" is 100 ms, not 99.999... ms.
    let scale = 10u128
        .checked_pow(fraction.len() as u32)
        .ok_or_else(|| format!("{text:?} has too many decimals"))?;
    let (whole, fraction) = (digits(whole)?, digits(fraction)?);
    let numerator = whole
        .checked_mul(scale)
        .and_then(|w| w.checked_add(fraction))
        .and_then(|n| n.checked_mul(per_unit))
        .ok_or_else(|| format!("{text:?} is too long"))?;
    if numerator % scale != 0 {
        return Err(format!("{text:?} is not a whole number of nanoseconds"));
    }
    let nanos = numerator / scale;
    let secs = u64::try_from(nanos / 1_000_000_000).map_err(|_| format!("{text:?} is too long"))?;
    Ok(Duration::new(secs, (nanos % 1_000_000_000) as u32))
}

/// The shortest exact text for `d`, in the largest unit that divides it: `"250ms"`, `"2m"`.
pub(crate) fn format(d: Duration) -> String {
    let nanos = d.as_nanos();
    if nanos == 0 {
        return "0s".to_owned();
    }
    let (unit, per_unit) = UNITS
        .iter()
        .copied()
        .find(|&(_, ns)| nanos % ns == 0)
        .unwrap_or(("ns", 1));
    let mut out = String::new();
    let _ = write!(out, "{}{unit}", nanos / per_unit);
    out
}

pub(crate) fn serialize<S: Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(&format(*d))
}

pub(crate) fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
    struct Text;
    impl Visitor<'_> for Text {
        type Value = Duration;
        fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.write_str("a duration such as \"250ms\", \"2s\" or \"1m\"")
        }
        fn visit_str<E: de::Error>(self, v: &str) -> Result<Duration, E> {
            parse(v).map_err(E::custom)
        }
    }
    d.deserialize_str(Text)
}

/// The same, for `Option<Duration>` fields.
pub(crate) mod option {
    use super::*;

    pub(crate) fn serialize<S: Serializer>(d: &Option<Duration>, s: S) -> Result<S::Ok, S::Error> {
        match d {
            Some(d) => s.serialize_some(&format(*d)),
            None => s.serialize_none(),
        }
    }

    pub(crate) fn deserialize<'de, D: Deserializer<'de>>(
        d: D,
    ) -> Result<Option<Duration>, D::Error> {
        #[derive(Deserialize)]
        struct Wrap(#[serde(deserialize_with = "super::deserialize")] Duration);
        Ok(Option::<Wrap>::deserialize(d)?.map(|Wrap(d)| d))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_each_unit_and_fractions_exactly() {
        let cases = [
            ("250ms", Duration::from_millis(250)),
            ("2s", Duration::from_secs(2)),
            ("1.5s", Duration::from_millis(1500)),
            ("0.1s", Duration::from_millis(100)),
            (".5m", Duration::from_secs(30)),
            ("2m", Duration::from_secs(120)),
            ("1h", Duration::from_secs(3600)),
            ("10us", Duration::from_micros(10)),
            ("7ns", Duration::from_nanos(7)),
            (" 3 s", Duration::from_secs(3)),
            ("0s", Duration::ZERO),
        ];
        for (text, want) in cases {
            assert_eq!(parse(text), Ok(want), "{text}");
        }
    }

    #[test]
    fn says_why_a_duration_is_refused() {
        assert!(parse("1.5.3s").unwrap_err().contains("not a number"));
        assert!(
            parse("99999999999999999999999h")
                .unwrap_err()
                .contains("too long")
        );
        assert!(parse("5").unwrap_err().contains("no unit"));
    }

    #[test]
    fn rejects_what_is_not_a_duration() {
        for bad in [
            "",
            "5",
            "s",
            "1.2.3s",
            "-1s",
            "2 weeks",
            "1.5ns",
            "99999999999999999999999h",
        ] {
            assert!(parse(bad).is_err(), "{bad:?} parsed");
        }
    }

    #[test]
    fn formats_in_the_largest_exact_unit_and_round_trips() {
        for (d, text) in [
            (Duration::from_millis(250), "250ms"),
            (Duration::from_secs(120), "2m"),
            (Duration::from_secs(90), "90s"),
            (Duration::from_nanos(1_500), "1500ns"),
            (Duration::ZERO, "0s"),
        ] {
            assert_eq!(format(d), text);
            assert_eq!(parse(text), Ok(d));
        }
    }
}
