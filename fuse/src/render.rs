//! File contents from secret data: a field's raw value, the whole secret as JSON,
//! and `KEY='value'` lines a POSIX shell can `source`.

use serde_json::{Map, Value};

/// Whether `name` can be a file name here (fields that cannot are only in the
/// `.json` and `.env` files).
pub fn valid_file_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 255
        && name != "."
        && name != ".."
        && !name.contains('/')
        && !name.contains('\0')
}

/// A field's file: a string as its bytes (no newline added); anything else as
/// JSON text.
pub fn field(value: &Value) -> Vec<u8> {
    match value {
        Value::String(text) => text.as_bytes().to_vec(),
        other => serde_json::to_vec(other).unwrap_or_default(),
    }
}

/// The whole secret, pretty-printed JSON with a final newline.
pub fn json(data: &Map<String, Value>) -> Vec<u8> {
    let mut bytes = serde_json::to_vec_pretty(data).unwrap_or_default();
    bytes.push(b'\n');
    bytes
}

/// Whether `name` is a shell variable name.
fn shell_name(name: &str) -> bool {
    let mut characters = name.chars();
    characters
        .next()
        .is_some_and(|first| first.is_ascii_alphabetic() || first == '_')
        && characters.all(|character| character.is_ascii_alphanumeric() || character == '_')
}

/// `value` in single quotes; a quote inside becomes `'\''`.
fn quoted(value: &str) -> String {
    format!("'{}'", value.replace('\'', r"'\''"))
}

/// One `KEY='value'` line per field whose name is a shell variable name, in
/// name order; other fields (and values holding a NUL byte, which no
/// environment can carry) become a `#` comment naming them.
pub fn env<'a>(fields: impl IntoIterator<Item = (&'a str, &'a Value)>) -> Vec<u8> {
    let mut fields: Vec<(&str, &Value)> = fields.into_iter().collect();
    fields.sort_by(|left, right| left.0.cmp(right.0));
    let mut text = String::new();
    for (name, value) in fields {
        let value = match value {
            Value::String(text) => text.clone(),
            other => serde_json::to_string(other).unwrap_or_default(),
        };
        if !shell_name(name) {
            text.push_str(&format!(
                "# skipped {}: not a shell variable name\n",
                serde_json::to_string(name).unwrap_or_default()
            ));
        } else if value.contains('\0') {
            text.push_str(&format!("# skipped {name}: the value holds a NUL byte\n"));
        } else {
            text.push_str(&format!("{name}={}\n", quoted(&value)));
        }
    }
    text.into_bytes()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn fields_are_raw_and_other_values_json() {
        assert_eq!(field(&json!("s3cret")), b"s3cret");
        assert_eq!(field(&json!(5432)), b"5432");
        assert_eq!(field(&json!({"a": [1, true]})), br#"{"a":[1,true]}"#);
    }

    #[test]
    fn env_lines_survive_a_shell() {
        let data = json!({
            "PASSWORD": "it's $HOME `x` \"q\"\nline2",
            "port": 5432,
            "bad-name": "x",
            "nul": "a\u{0}b",
        });
        let text = String::from_utf8(env(data
            .as_object()
            .unwrap()
            .iter()
            .map(|(key, value)| (key.as_str(), value))))
        .unwrap();
        assert_eq!(
            text,
            "PASSWORD='it'\\''s $HOME `x` \"q\"\nline2'\n\
             # skipped \"bad-name\": not a shell variable name\n\
             # skipped nul: the value holds a NUL byte\n\
             port='5432'\n"
        );
        // A real shell reads the values back unchanged.
        let script = format!("{text}\nprintf '%s|%s' \"$PASSWORD\" \"$port\"");
        let output = std::process::Command::new("sh")
            .arg("-c")
            .arg(script)
            .output()
            .unwrap();
        assert_eq!(
            String::from_utf8(output.stdout).unwrap(),
            "it's $HOME `x` \"q\"\nline2|5432"
        );
    }

    #[test]
    fn file_names_that_cannot_be_files() {
        for bad in ["", ".", "..", "a/b", "a\0b", &"x".repeat(256)] {
            assert!(!valid_file_name(bad), "{bad:?}");
        }
        assert!(valid_file_name("password"));
        assert!(valid_file_name(".hidden"));
    }

    proptest::proptest! {
        /// Whatever the fields hold, a shell that sources the `.env` file gets
        /// exactly the values back, and nothing else runs or is set.
        #[test]
        fn env_files_give_a_shell_back_exactly_the_values(
            fields in proptest::collection::btree_map(
                "[A-Za-z_][A-Za-z0-9_]{0,6}|[a-z-]{1,6}",
                "[^\u{0}]{0,24}",
                1..5,
            )
        ) {
            let values: Vec<(String, Value)> = fields
                .iter()
                .map(|(name, value)| (name.clone(), Value::String(value.clone())))
                .collect();
            let text = String::from_utf8(env(values.iter().map(|(name, value)| (name.as_str(), value)))).unwrap();
            let names: Vec<&String> = fields.keys().filter(|name| shell_name(name)).collect();
            // A marker no value can set: it must still be unset afterwards.
            let mut script = format!("unset COFFER_INJECTED\n{text}\nprintf '%s' \"${{COFFER_INJECTED-unset}}\"");
            for name in &names {
                script.push_str(&format!("; printf '\\0%s' \"${name}\""));
            }
            let output = std::process::Command::new("sh").arg("-c").arg(&script).output().unwrap();
            proptest::prop_assert!(output.status.success(), "{text}");
            let stdout = String::from_utf8(output.stdout).unwrap();
            let mut parts = stdout.split('\0');
            proptest::prop_assert_eq!(parts.next(), Some("unset"));
            for name in names {
                proptest::prop_assert_eq!(parts.next(), Some(fields[name].as_str()), "{}", name);
            }
        }

        #[test]
        fn file_names_never_escape_their_directory(name in "\\PC{0,300}") {
            if valid_file_name(&name) {
                proptest::prop_assert!(!name.contains('/') && name != ".." && name != ".");
            }
        }
    }
}
