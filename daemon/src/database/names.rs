//! Names and passwords the database engine makes, from alphabets that cannot
//! break out of a SQL identifier or literal, and the check on names operators
//! give (roles, connections).

use crate::crypto;

/// Role and connection names: letters, digits, `-` and `_`, 1 to 64 of them.
pub fn validate_name(kind: &str, name: &str) -> Result<(), String> {
    if name.is_empty() || name.len() > 64 {
        return Err(format!("{kind} name must be 1 to 64 characters"));
    }
    if !name
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_'))
    {
        return Err(format!(
            "{kind} name {:?} may hold only letters, digits, '-' and '_'",
            name.chars().take(64).collect::<String>()
        ));
    }
    Ok(())
}

/// Keeps the lowercase letters, digits and `-`/`_` of `text`, at most `limit`.
fn sanitize(text: &str, limit: usize) -> String {
    text.chars()
        .map(|c| c.to_ascii_lowercase())
        .filter(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || *c == '_')
        .take(limit)
        .collect()
}

/// A dynamic user's name, as Vault makes it: `v-<display>-<role>-<random>-<unix
/// seconds>`, cut to the database's limit (the random part always stays).
pub fn username(
    display_name: &str,
    role: &str,
    now: u64,
    limit: usize,
) -> Result<String, crypto::RandomError> {
    let random = crypto::random_base62(20)?.to_ascii_lowercase();
    let full = format!(
        "v-{}-{}-{random}-{now}",
        sanitize(display_name, 8),
        sanitize(role, 8)
    );
    if full.len() <= limit {
        return Ok(full);
    }
    // Short limits (MySQL's 32): keep the prefix, the role and the randomness.
    let short = format!("v-{}-{random}", sanitize(role, 4));
    Ok(short.chars().take(limit).collect())
}

const UPPER: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZ";
const LOWER: &[u8] = b"abcdefghijklmnopqrstuvwxyz";
const DIGITS: &[u8] = b"0123456789";

/// Vault's default password policy: 20 characters of letters, digits and `-`,
/// with at least one upper case letter, one lower case letter, one digit and one
/// dash. No quote, backslash or space: it goes into SQL literals as it is.
pub fn password() -> Result<String, crypto::RandomError> {
    const LENGTH: usize = 20;
    let alphabet: Vec<u8> = [UPPER, LOWER, DIGITS, b"-"].concat();
    loop {
        let mut bytes = [0u8; LENGTH];
        crypto::fill_random(&mut bytes)?;
        // 256 is not a multiple of 63: reject the top values to stay uniform.
        let limit = 256 - (256 % alphabet.len());
        if bytes.iter().any(|byte| usize::from(*byte) >= limit) {
            continue;
        }
        let password: String = bytes
            .iter()
            .map(|byte| char::from(alphabet[usize::from(*byte) % alphabet.len()]))
            .collect();
        let has = |set: &[u8]| password.bytes().any(|byte| set.contains(&byte));
        if has(UPPER) && has(LOWER) && has(DIGITS) && has(b"-") {
            return Ok(password);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_operators_give_are_checked() {
        for good in ["app", "read-only_2", &"a".repeat(64)] {
            assert!(validate_name("role", good).is_ok(), "{good}");
        }
        for bad in [
            "",
            "app'; DROP TABLE x; --",
            "a\"b",
            "a b",
            "ü",
            &"a".repeat(65),
        ] {
            assert!(validate_name("role", bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn usernames_fit_and_stay_in_a_safe_alphabet() {
        let name = username("token-App User!", "read'only", 1_800_000_000, 63).unwrap();
        assert!(name.starts_with("v-tokenapp-readonly-"), "{name}");
        assert!(name.ends_with("-1800000000"), "{name}");
        let short = username("token", "readonly", 1_800_000_000, 32).unwrap();
        assert!(short.len() <= 32, "{short}");
        for name in [name, short] {
            assert!(
                name.chars().all(|c| c.is_ascii_lowercase()
                    || c.is_ascii_digit()
                    || matches!(c, '-' | '_')),
                "{name}"
            );
        }
        assert_ne!(
            username("a", "b", 1, 32).unwrap(),
            username("a", "b", 1, 32).unwrap()
        );
    }

    #[test]
    fn passwords_follow_the_policy() {
        for _ in 0..200 {
            let password = password().unwrap();
            assert_eq!(password.len(), 20);
            assert!(password.bytes().any(|b| b.is_ascii_uppercase()));
            assert!(password.bytes().any(|b| b.is_ascii_lowercase()));
            assert!(password.bytes().any(|b| b.is_ascii_digit()));
            assert!(password.contains('-'));
            assert!(
                password
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-')
            );
        }
    }
}
