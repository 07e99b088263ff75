//! Vault's password policies: `length` and `rule "charset" { charset, min-chars }`
//! blocks in HCL, stored behind the barrier at `sys/password-policy/<name>` and
//! managed at `sys/policies/password/<name>`. A database connection names one
//! (`password_policy`) for the passwords it makes.
//!
//! Passwords are filled into SQL statements by text, so a policy may not use
//! quotes, backslashes, whitespace or control characters.

use crate::api::error::{ApiError, ApiResult};
use crate::barrier::Barrier;
use crate::crypto;
use crate::hcl::{self, Kind};

/// Where policies are stored, by name.
pub const PREFIX: &str = "sys/password-policy/";
const MIN_LENGTH: usize = 4;
const MAX_LENGTH: usize = 100;

/// One `rule "charset"`: at least `min_chars` of `charset`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Charset {
    pub charset: Vec<char>,
    pub min_chars: usize,
}

/// A parsed policy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PasswordPolicy {
    pub length: usize,
    pub rules: Vec<Charset>,
    /// Every character any rule allows, each once.
    alphabet: Vec<char>,
}

fn unsafe_character(character: char) -> bool {
    matches!(character, '\'' | '"' | '\\' | '`')
        || character.is_whitespace()
        || character.is_control()
}

fn number(value: &hcl::Value, what: &str) -> Result<usize, String> {
    match &value.kind {
        Kind::Number(number) => number
            .as_u64()
            .and_then(|number| usize::try_from(number).ok())
            .ok_or_else(|| format!("line {}: {what} must be a whole number", value.line)),
        _ => Err(format!(
            "line {}: {what} must be a number, not {}",
            value.line,
            value.type_name()
        )),
    }
}

/// Parses and checks a policy's HCL.
pub fn parse(text: &str) -> Result<PasswordPolicy, String> {
    let body = hcl::parse(text).map_err(|error| error.to_string())?;
    let mut length = None;
    for attribute in &body.attributes {
        match attribute.key.as_str() {
            "length" => length = Some(number(&attribute.value, "length")?),
            other => {
                return Err(format!(
                    "line {}: unknown setting {other:?} (a policy has length and rule \"charset\" blocks)",
                    attribute.line
                ));
            }
        }
    }
    let length = length.ok_or("the policy has no length")?;
    if !(MIN_LENGTH..=MAX_LENGTH).contains(&length) {
        return Err(format!("length must be {MIN_LENGTH} to {MAX_LENGTH}"));
    }
    let mut rules = Vec::new();
    for block in &body.blocks {
        if block.ident != "rule" || block.labels.first().map(String::as_str) != Some("charset") {
            return Err(format!(
                "line {}: only rule \"charset\" blocks are supported",
                block.line
            ));
        }
        let mut charset = None;
        let mut min_chars = 0;
        for attribute in &block.body.attributes {
            match (attribute.key.as_str(), &attribute.value.kind) {
                ("charset", Kind::String(text)) => charset = Some(text.clone()),
                ("min-chars", _) => min_chars = number(&attribute.value, "min-chars")?,
                (other, _) => {
                    return Err(format!(
                        "line {}: unknown rule setting {other:?} (charset, min-chars)",
                        attribute.line
                    ));
                }
            }
        }
        let charset =
            charset.ok_or_else(|| format!("line {}: a rule needs a charset", block.line))?;
        let mut characters: Vec<char> = Vec::new();
        for character in charset.chars() {
            if unsafe_character(character) {
                return Err(format!(
                    "line {}: the charset may not hold quotes, backslashes, whitespace or control characters (passwords go into SQL statements)",
                    block.line
                ));
            }
            if !characters.contains(&character) {
                characters.push(character);
            }
        }
        if characters.is_empty() {
            return Err(format!("line {}: the charset is empty", block.line));
        }
        rules.push(Charset {
            charset: characters,
            min_chars,
        });
    }
    if rules.is_empty() {
        return Err("the policy needs at least one rule \"charset\" block".into());
    }
    let required: usize = rules.iter().map(|rule| rule.min_chars).sum();
    if required > length {
        return Err(format!(
            "the rules ask for {required} characters, more than the length of {length}"
        ));
    }
    let mut alphabet = Vec::new();
    for character in rules.iter().flat_map(|rule| rule.charset.iter()) {
        if !alphabet.contains(character) {
            alphabet.push(*character);
        }
    }
    Ok(PasswordPolicy {
        length,
        rules,
        alphabet,
    })
}

/// The stored policy `name`, parsed; a missing or broken one is the client's
/// error (it named it).
pub fn load(barrier: &Barrier, name: &str) -> ApiResult<PasswordPolicy> {
    let text: String = barrier
        .get_json(&format!("{PREFIX}{name}"))?
        .ok_or_else(|| ApiError::invalid(format!("password policy {name:?} does not exist")))?;
    parse(&text).map_err(|error| ApiError::invalid(format!("password policy {name:?}: {error}")))
}

/// A uniform index below `bound` (rejection sampling over random u32s).
fn random_below(bound: usize) -> Result<usize, crypto::RandomError> {
    let bound = u32::try_from(bound).unwrap_or(u32::MAX).max(1);
    let zone = u32::MAX - (u32::MAX % bound);
    loop {
        let mut bytes = [0u8; 4];
        crypto::fill_random(&mut bytes)?;
        let value = u32::from_le_bytes(bytes);
        if value < zone {
            return Ok((value % bound) as usize);
        }
    }
}

impl PasswordPolicy {
    /// A password: each rule's `min-chars` from its charset, the rest from all
    /// of them, in a random order.
    pub fn generate(&self) -> Result<String, crypto::RandomError> {
        let mut characters = Vec::with_capacity(self.length);
        for rule in &self.rules {
            for _ in 0..rule.min_chars {
                characters.push(rule.charset[random_below(rule.charset.len())?]);
            }
        }
        while characters.len() < self.length {
            characters.push(self.alphabet[random_below(self.alphabet.len())?]);
        }
        for index in (1..characters.len()).rev() {
            characters.swap(index, random_below(index + 1)?);
        }
        Ok(characters.into_iter().collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const POLICY: &str = r#"
length = 24
rule "charset" {
  charset = "abcdefghijklmnopqrstuvwxyz"
  min-chars = 2
}
rule "charset" {
  charset = "0123456789"
  min-chars = 3
}
rule "charset" {
  charset = "!#%"
  min-chars = 1
}
"#;

    #[test]
    fn passwords_meet_every_rule() {
        let policy = parse(POLICY).unwrap();
        for _ in 0..300 {
            let password = policy.generate().unwrap();
            assert_eq!(password.chars().count(), 24);
            let count = |set: &str| password.chars().filter(|c| set.contains(*c)).count();
            assert!(count("abcdefghijklmnopqrstuvwxyz") >= 2, "{password}");
            assert!(count("0123456789") >= 3, "{password}");
            assert!(count("!#%") >= 1, "{password}");
            assert_eq!(count("abcdefghijklmnopqrstuvwxyz0123456789!#%"), 24);
        }
        assert_ne!(policy.generate().unwrap(), policy.generate().unwrap());
    }

    #[test]
    fn bad_policies_are_refused_with_a_reason() {
        for (text, expected) in [
            (
                "length = 3\nrule \"charset\" { charset = \"ab\" }",
                "length",
            ),
            (
                "length = 101\nrule \"charset\" { charset = \"ab\" }",
                "length",
            ),
            ("rule \"charset\" { charset = \"ab\" }", "no length"),
            ("length = 10", "at least one rule"),
            (
                "length = 10\nrule \"charset\" { charset = \"a'b\" }",
                "quotes",
            ),
            (
                "length = 10\nrule \"charset\" { charset = \"a b\" }",
                "whitespace",
            ),
            ("length = 10\nrule \"charset\" { charset = \"\" }", "empty"),
            (
                "length = 4\nrule \"charset\" {\ncharset = \"ab\"\nmin-chars = 5\n}",
                "more than",
            ),
            (
                "length = 10\nrule \"other\" { charset = \"ab\" }",
                "charset",
            ),
            (
                "length = 10\nsize = 3\nrule \"charset\" { charset = \"ab\" }",
                "unknown",
            ),
            (
                "length = \"ten\"\nrule \"charset\" { charset = \"ab\" }",
                "number",
            ),
            ("length = ", "syntax"),
        ] {
            let error = parse(text).unwrap_err();
            assert!(error.contains(expected), "{text:?}: {error}");
        }
    }
}
