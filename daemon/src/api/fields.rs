//! Typed access to request data, with Vault's lenient coercions (a number may come
//! as a string, a list as a comma-separated string). Errors name the field, never
//! its value: values may be secrets.

use std::collections::BTreeMap;

use serde_json::{Map, Value};

use super::error::{ApiError, ApiResult};
use crate::duration;

pub struct Fields<'a> {
    data: &'a Map<String, Value>,
}

fn invalid(key: &str, expected: &str) -> ApiError {
    ApiError::invalid(format!("invalid value for {key:?}: expected {expected}"))
}

impl<'a> Fields<'a> {
    pub fn new(data: &'a Map<String, Value>) -> Self {
        Fields { data }
    }

    /// The raw value, treating JSON null as absent.
    pub fn raw(&self, key: &str) -> Option<&'a Value> {
        self.data.get(key).filter(|value| !value.is_null())
    }

    /// Refuses any field not in `known`.
    pub fn only(&self, known: &[&str]) -> ApiResult<()> {
        match self.data.keys().find(|key| !known.contains(&key.as_str())) {
            Some(unknown) => Err(ApiError::invalid(format!(
                "unknown field {:?}",
                unknown.chars().take(64).collect::<String>()
            ))),
            None => Ok(()),
        }
    }

    /// Accepts fields Vault knows but coffer does not implement only when they
    /// carry no value (null, false, 0, "", [] or {}), as clients send defaults.
    pub fn refuse_unless_empty(&self, keys: &[&str]) -> ApiResult<()> {
        for key in keys {
            let empty = match self.data.get(*key) {
                None | Some(Value::Null) | Some(Value::Bool(false)) => true,
                Some(Value::String(text)) => text.is_empty(),
                Some(Value::Array(items)) => items.is_empty(),
                Some(Value::Object(map)) => map.is_empty(),
                Some(Value::Number(number)) => number.as_f64() == Some(0.0),
                Some(Value::Bool(true)) => false,
            };
            if !empty {
                return Err(ApiError::invalid(format!(
                    "{key:?} is not supported by coffer"
                )));
            }
        }
        Ok(())
    }

    pub fn string(&self, key: &str) -> ApiResult<Option<String>> {
        match self.raw(key) {
            None => Ok(None),
            Some(Value::String(text)) => Ok(Some(text.clone())),
            Some(Value::Number(number)) => Ok(Some(number.to_string())),
            Some(Value::Bool(flag)) => Ok(Some(flag.to_string())),
            Some(_) => Err(invalid(key, "a string")),
        }
    }

    pub fn bool(&self, key: &str) -> ApiResult<Option<bool>> {
        match self.raw(key) {
            None => Ok(None),
            Some(Value::Bool(flag)) => Ok(Some(*flag)),
            Some(Value::String(text)) => match text.as_str() {
                "true" | "1" | "t" | "T" | "TRUE" | "True" => Ok(Some(true)),
                "false" | "0" | "f" | "F" | "FALSE" | "False" | "" => Ok(Some(false)),
                _ => Err(invalid(key, "a boolean")),
            },
            Some(Value::Number(number)) => match number.as_u64() {
                Some(0) => Ok(Some(false)),
                Some(1) => Ok(Some(true)),
                _ => Err(invalid(key, "a boolean")),
            },
            Some(_) => Err(invalid(key, "a boolean")),
        }
    }

    pub fn u64(&self, key: &str) -> ApiResult<Option<u64>> {
        match self.raw(key) {
            None => Ok(None),
            Some(Value::Number(number)) => number
                .as_u64()
                .map(Some)
                .ok_or_else(|| invalid(key, "a non-negative integer")),
            Some(Value::String(text)) if text.is_empty() => Ok(None),
            Some(Value::String(text)) => text
                .trim()
                .parse()
                .map(Some)
                .map_err(|_| invalid(key, "a non-negative integer")),
            Some(_) => Err(invalid(key, "a non-negative integer")),
        }
    }

    /// Seconds, from a number or a duration string such as `"1h"`.
    pub fn duration(&self, key: &str) -> ApiResult<Option<u64>> {
        match self.raw(key) {
            None => Ok(None),
            Some(Value::String(text)) if text.is_empty() => Ok(None),
            Some(value) => duration::from_json(value)
                .map(Some)
                .map_err(|_| invalid(key, "a duration such as \"30m\" or a number of seconds")),
        }
    }

    /// A list of strings, from a JSON array or a comma-separated string.
    pub fn string_list(&self, key: &str) -> ApiResult<Option<Vec<String>>> {
        match self.raw(key) {
            None => Ok(None),
            Some(Value::String(text)) => Ok(Some(
                text.split(',')
                    .map(str::trim)
                    .filter(|item| !item.is_empty())
                    .map(str::to_owned)
                    .collect(),
            )),
            Some(Value::Array(items)) => items
                .iter()
                .map(|item| match item {
                    Value::String(text) => Ok(text.trim().to_owned()),
                    _ => Err(invalid(key, "a list of strings")),
                })
                .filter(|item| !matches!(item, Ok(text) if text.is_empty()))
                .collect::<ApiResult<Vec<_>>>()
                .map(Some),
            Some(_) => Err(invalid(key, "a list of strings")),
        }
    }

    /// A list of non-negative integers (KV versions), from an array or a
    /// comma-separated string.
    pub fn u64_list(&self, key: &str) -> ApiResult<Option<Vec<u64>>> {
        let expected = "a list of version numbers";
        match self.raw(key) {
            None => Ok(None),
            Some(Value::Array(items)) => items
                .iter()
                .map(|item| match item {
                    Value::Number(number) => number.as_u64().ok_or_else(|| invalid(key, expected)),
                    Value::String(text) => text.trim().parse().map_err(|_| invalid(key, expected)),
                    _ => Err(invalid(key, expected)),
                })
                .collect::<ApiResult<Vec<_>>>()
                .map(Some),
            Some(Value::String(text)) => text
                .split(',')
                .map(|item| item.trim().parse().map_err(|_| invalid(key, expected)))
                .collect::<ApiResult<Vec<_>>>()
                .map(Some),
            Some(Value::Number(number)) => number
                .as_u64()
                .map(|version| Some(vec![version]))
                .ok_or_else(|| invalid(key, expected)),
            Some(_) => Err(invalid(key, expected)),
        }
    }

    /// An object of string values (token metadata, KV custom metadata, mount
    /// options). As in Vault, numbers and booleans are taken as their text
    /// (`{"version": 2}`) and null values are left out.
    pub fn string_map(&self, key: &str) -> ApiResult<Option<BTreeMap<String, String>>> {
        match self.raw(key) {
            None => Ok(None),
            Some(Value::Object(entries)) => entries
                .iter()
                .filter(|(_, value)| !value.is_null())
                .map(|(name, value)| match value {
                    Value::String(text) => Ok((name.clone(), text.clone())),
                    Value::Number(number) => Ok((name.clone(), number.to_string())),
                    Value::Bool(flag) => Ok((name.clone(), flag.to_string())),
                    _ => Err(invalid(key, "an object of string values")),
                })
                .collect::<ApiResult<BTreeMap<_, _>>>()
                .map(Some),
            Some(_) => Err(invalid(key, "an object of string values")),
        }
    }

    pub fn object(&self, key: &str) -> ApiResult<Option<&'a Map<String, Value>>> {
        match self.raw(key) {
            None => Ok(None),
            Some(Value::Object(map)) => Ok(Some(map)),
            Some(_) => Err(invalid(key, "a JSON object")),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn fields(value: Value) -> Map<String, Value> {
        value.as_object().cloned().unwrap()
    }

    #[test]
    fn coerces_like_vault() {
        let data = fields(json!({
            "n": "42", "b": "true", "list": "a, b,,c", "array": ["x", "y"],
            "ttl": "1h", "versions": "1,2", "null": null
        }));
        let fields = Fields::new(&data);
        assert_eq!(fields.u64("n").unwrap(), Some(42));
        assert_eq!(fields.bool("b").unwrap(), Some(true));
        assert_eq!(
            fields.string_list("list").unwrap().unwrap(),
            vec!["a", "b", "c"]
        );
        assert_eq!(
            fields.string_list("array").unwrap().unwrap(),
            vec!["x", "y"]
        );
        assert_eq!(fields.duration("ttl").unwrap(), Some(3600));
        assert_eq!(fields.u64_list("versions").unwrap(), Some(vec![1, 2]));
        assert_eq!(fields.string("null").unwrap(), None);
        assert_eq!(fields.string("missing").unwrap(), None);
    }

    #[test]
    fn errors_name_the_field_not_the_value() {
        let data = fields(json!({"ttl": "s3cr3t-value", "n": -1, "m": {"a": [1]}}));
        let fields = Fields::new(&data);
        let message = fields.duration("ttl").unwrap_err().messages.join(" ");
        assert!(message.contains("\"ttl\"") && !message.contains("s3cr3t"));
        assert!(fields.u64("n").is_err());
        assert!(fields.string_map("m").is_err());
        assert!(fields.only(&["ttl", "n"]).is_err());
    }

    #[test]
    fn unimplemented_fields_pass_only_when_empty() {
        let data = fields(json!({"a": false, "b": "", "c": [], "d": {}, "e": 0, "f": null}));
        assert!(
            Fields::new(&data)
                .refuse_unless_empty(&["a", "b", "c", "d", "e", "f", "g"])
                .is_ok()
        );
        let set = fields(json!({"a": true, "b": ["x"]}));
        let message = Fields::new(&set)
            .refuse_unless_empty(&["a"])
            .unwrap_err()
            .messages
            .join("");
        assert!(message.contains("\"a\" is not supported"), "{message}");
        assert!(Fields::new(&set).refuse_unless_empty(&["b"]).is_err());
    }
}
