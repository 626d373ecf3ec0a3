//! `KEY=VALUE` pairs given with `--env` and `--secret-env`.

/// Joblet's limit on one value.
pub const MAX_VALUE_BYTES: usize = 32 * 1024;

/// Names whose override changes how the job's shell behaves; worth a warning, not an error.
const SENSITIVE_NAMES: &[&str] = &[
    "PATH", "HOME", "USER", "SHELL", "TERM", "PWD", "OLDPWD", "HOSTNAME", "LANG", "LC_ALL",
];

/// Splits and checks `KEY=VALUE`; the error text names what is wrong (the caller adds the
/// flag). Secret values never appear in errors.
pub fn parse_pair(text: &str, secret: bool) -> Result<(String, String), String> {
    let Some((key, value)) = text.split_once('=') else {
        let shown = if secret { "the value" } else { text };
        return Err(format!("expected KEY=VALUE, got '{shown}'"));
    };
    check_key(key)?;
    if value.len() > MAX_VALUE_BYTES {
        return Err(format!(
            "the value of {key} is {} bytes; the limit is {MAX_VALUE_BYTES}",
            value.len()
        ));
    }
    if value.contains('\0') {
        return Err(format!("the value of {key} contains a NUL byte"));
    }
    Ok((key.to_string(), value.to_string()))
}

/// `^[A-Za-z_][A-Za-z0-9_]*$`, as Joblet requires.
fn check_key(key: &str) -> Result<(), String> {
    let mut chars = key.chars();
    let valid = match chars.next() {
        Some(c) if c.is_ascii_alphabetic() || c == '_' => {
            chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
        }
        _ => false,
    };
    if valid {
        Ok(())
    } else {
        Err(format!(
            "'{key}' is not a valid variable name (letters, digits and _, not starting with a digit)"
        ))
    }
}

/// A note for stderr when a key overrides something the job's environment relies on.
pub fn override_warning(key: &str) -> Option<String> {
    SENSITIVE_NAMES
        .contains(&key)
        .then(|| format!("warning: setting {key} overrides the job's default {key}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pairs_split_at_the_first_equals() {
        assert_eq!(parse_pair("A=b=c", false), Ok(("A".into(), "b=c".into())));
        assert_eq!(parse_pair("_X1=", false), Ok(("_X1".into(), String::new())));
    }

    #[test]
    fn bad_keys_and_missing_equals_are_refused() {
        assert!(
            parse_pair("NOEQUALS", false)
                .unwrap_err()
                .contains("KEY=VALUE")
        );
        assert!(parse_pair("1A=x", false).unwrap_err().contains("'1A'"));
        assert!(parse_pair("A-B=x", false).is_err());
        assert!(parse_pair("=x", false).is_err());
    }

    #[test]
    fn secret_text_is_not_echoed() {
        let err = parse_pair("hunter2", true).unwrap_err();
        assert!(!err.contains("hunter2"), "{err}");
    }

    #[test]
    fn oversized_values_are_refused() {
        let big = format!("K={}", "v".repeat(MAX_VALUE_BYTES + 1));
        assert!(parse_pair(&big, false).unwrap_err().contains("limit"));
        let ok = format!("K={}", "v".repeat(MAX_VALUE_BYTES));
        assert!(parse_pair(&ok, false).is_ok());
    }

    #[test]
    fn overriding_path_is_warned() {
        assert!(override_warning("PATH").is_some());
        assert!(override_warning("MY_VAR").is_none());
    }
}
