//! Durations as Vault accepts them: a number of seconds (`3600`, `"3600"`) or a Go
//! duration string with an optional day unit (`"1h30m"`, `"768h"`, `"2d"`, `"90s"`).

use serde_json::Value;

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("invalid duration {0:?}: expected seconds or a duration such as \"1h30m\"")]
pub struct Error(pub String);

/// Parses a duration in whole seconds (fractions are truncated, as Vault does).
pub fn parse_seconds(text: &str) -> Result<u64, Error> {
    let text = text.trim();
    let fail = || Error(text.chars().take(64).collect());
    if text.is_empty() {
        return Err(fail());
    }
    if let Ok(seconds) = text.parse::<u64>() {
        return Ok(seconds);
    }
    let mut total_nanos: u128 = 0;
    let mut rest = text;
    while !rest.is_empty() {
        let number_len = rest
            .find(|character: char| !(character.is_ascii_digit() || character == '.'))
            .ok_or_else(fail)?;
        if number_len == 0 {
            return Err(fail());
        }
        let (number, after) = rest.split_at(number_len);
        let unit_len = after
            .find(|character: char| character.is_ascii_digit() || character == '.')
            .unwrap_or(after.len());
        let (unit, after_unit) = after.split_at(unit_len);
        let unit_nanos: u128 = match unit {
            "ns" => 1,
            "us" | "µs" => 1_000,
            "ms" => 1_000_000,
            "s" => 1_000_000_000,
            "m" => 60 * 1_000_000_000,
            "h" => 3_600 * 1_000_000_000,
            "d" => 86_400 * 1_000_000_000,
            _ => return Err(fail()),
        };
        let (whole, fraction) = number.split_once('.').unwrap_or((number, ""));
        if whole.is_empty() && fraction.is_empty() {
            return Err(fail());
        }
        let whole: u128 = if whole.is_empty() {
            0
        } else {
            whole.parse().map_err(|_| fail())?
        };
        let mut part = whole.checked_mul(unit_nanos).ok_or_else(fail)?;
        if !fraction.is_empty() {
            let digits = fraction.len().min(18) as u32;
            let fraction_value: u128 = fraction[..digits as usize].parse().map_err(|_| fail())?;
            part += fraction_value * unit_nanos / 10u128.pow(digits);
        }
        total_nanos = total_nanos.checked_add(part).ok_or_else(fail)?;
        rest = after_unit;
    }
    u64::try_from(total_nanos / 1_000_000_000).map_err(|_| fail())
}

/// A duration given in JSON: a non-negative number of seconds or a string.
pub fn from_json(value: &Value) -> Result<u64, Error> {
    match value {
        Value::Number(number) => number
            .as_u64()
            .or_else(|| {
                number
                    .as_f64()
                    .filter(|seconds| *seconds >= 0.0)
                    .map(|seconds| seconds as u64)
            })
            .ok_or_else(|| Error(number.to_string())),
        Value::String(text) => parse_seconds(text),
        other => Err(Error(other.to_string().chars().take(64).collect())),
    }
}

/// Formats seconds as Vault prints durations in metadata (`"0s"`, `"1h0m0s"`).
pub fn format_go(seconds: u64) -> String {
    if seconds == 0 {
        return "0s".into();
    }
    let hours = seconds / 3600;
    let minutes = (seconds % 3600) / 60;
    let secs = seconds % 60;
    if hours > 0 {
        format!("{hours}h{minutes}m{secs}s")
    } else if minutes > 0 {
        format!("{minutes}m{secs}s")
    } else {
        format!("{secs}s")
    }
}

/// Formats seconds as OpenBao's warnings do, without zero units (`"2h"`,
/// `"1h30m"`, `"45s"`).
pub fn format_short(seconds: u64) -> String {
    if seconds == 0 {
        return "0s".into();
    }
    let mut text = String::new();
    for (unit, size) in [("h", 3600), ("m", 60), ("s", 1)] {
        let count = seconds / size % if size == 3600 { u64::MAX } else { 60 };
        if count > 0 {
            text.push_str(&format!("{count}{unit}"));
        }
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn short_formats_drop_zero_units() {
        for (seconds, text) in [
            (0, "0s"),
            (45, "45s"),
            (7200, "2h"),
            (5400, "1h30m"),
            (3661, "1h1m1s"),
        ] {
            assert_eq!(format_short(seconds), text);
        }
    }

    fn check(input: &str, expected: Option<u64>) {
        assert_eq!(parse_seconds(input).ok(), expected, "input {input:?}");
    }

    #[test]
    fn parses_vault_durations() {
        check("0", Some(0));
        check("3600", Some(3600));
        check("90s", Some(90));
        check("1h30m", Some(5400));
        check("768h", Some(2_764_800));
        check("2d", Some(172_800));
        check("1.5h", Some(5400));
        check("1500ms", Some(1));
        check(" 10m ", Some(600));
        check("", None);
        check("h", None);
        check("10x", None);
        check("-5s", None);
        check("1h-5m", None);
        check("99999999999999999999999h", None);
    }

    #[test]
    fn parses_json_values() {
        assert_eq!(from_json(&serde_json::json!(30)), Ok(30));
        assert_eq!(from_json(&serde_json::json!("30m")), Ok(1800));
        assert!(from_json(&serde_json::json!(-1)).is_err());
        assert!(from_json(&serde_json::json!(true)).is_err());
    }

    #[test]
    fn formats_like_go() {
        assert_eq!(format_go(0), "0s");
        assert_eq!(format_go(59), "59s");
        assert_eq!(format_go(61), "1m1s");
        assert_eq!(format_go(3600), "1h0m0s");
    }
}
