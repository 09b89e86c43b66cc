//! Input rules shared by the server (which enforces them) and the forms (which hint them).

/// Usernames: 3 to 32 characters from `[A-Za-z0-9_.-]`, compared without regard to case.
pub const USERNAME_MIN: usize = 3;
pub const USERNAME_MAX: usize = 32;
/// Passwords: 8 to 128 characters (characters, not bytes), checked before any hashing.
pub const PASSWORD_MIN: usize = 8;
pub const PASSWORD_MAX: usize = 128;

/// Said when the confirmation differs from the password.
pub const PASSWORDS_DIFFER: &str = "The two passwords do not match.";

/// Said of a typed e-mail address that cannot be one (the server's parser decides; these are
/// its words, see `identity::mail::address`).
pub const EMAIL_MESSAGES: [&str; 4] = [
    "Enter an e-mail address.",
    "An e-mail address has at most 254 characters.",
    "That is not an e-mail address: it should look like name@example.com.",
    "Use the address in plain letters and digits: a domain with accents in its xn-- form, and \
     no accented letters before the @.",
];

/// Said when a sign-up leaves out the address that the server requires.
pub const EMAIL_REQUIRED: &str = "Enter an e-mail address: this site needs one for every account.";

/// Said when an address is given to a site that sends no mail (`EMAIL=off`).
pub const EMAIL_OFF: &str = "This site sends no e-mail: leave the address out.";

/// Said when a sign-in or reset name is neither a username nor an address.
pub const LOGIN_INVALID: &str = "Enter your username or your e-mail address.";

/// True when `text` is, word for word, one of the messages these rules give.
pub fn is_our_message(text: &str) -> bool {
    let ours = [
        username("").err(),
        username("a b").err(),
        password("").err(),
        password(&"x".repeat(PASSWORD_MAX + 1)).err(),
        Some(PASSWORDS_DIFFER.to_string()),
        Some(EMAIL_REQUIRED.to_string()),
        Some(LOGIN_INVALID.to_string()),
        Some(EMAIL_OFF.to_string()),
    ];
    ours.iter().flatten().any(|m| m == text) || EMAIL_MESSAGES.contains(&text)
}

pub fn username(name: &str) -> Result<(), String> {
    let len = name.chars().count();
    if !(USERNAME_MIN..=USERNAME_MAX).contains(&len) {
        return Err(format!(
            "The username must be {USERNAME_MIN} to {USERNAME_MAX} characters long."
        ));
    }
    if !name
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-'))
    {
        return Err("The username may contain only letters, digits, '_', '.' and '-'.".to_string());
    }
    Ok(())
}

pub fn password(password: &str) -> Result<(), String> {
    let len = password.chars().count();
    if len < PASSWORD_MIN {
        return Err(format!(
            "The password must be at least {PASSWORD_MIN} characters long."
        ));
    }
    if len > PASSWORD_MAX {
        return Err(format!(
            "The password must be at most {PASSWORD_MAX} characters long."
        ));
    }
    Ok(())
}

/// The `next` target after sign-in: only a path on this site, never another origin.
/// Anything else (`//evil.example`, `https://...`, `/\evil`, control characters) gives `None`.
pub fn safe_next(next: Option<&str>) -> Option<String> {
    let next = next?.trim();
    let ok = next.starts_with('/')
        && !next.starts_with("//")
        && !next.starts_with("/\\")
        && next.len() <= 512
        && next.chars().all(|c| c.is_ascii_graphic() && c != '\\');
    ok.then(|| next.to_string())
}

#[cfg(test)]
mod tests {
    /// The server's words for a bad address are ours, word for word (a form posted without
    /// JavaScript shows them only then).
    #[cfg(feature = "ssr")]
    #[test]
    fn the_address_parsers_words_are_ours() {
        use identity::mail::address::AddressError as E;
        for e in [E::Empty, E::TooLong, E::Invalid, E::NotAscii] {
            assert!(super::is_our_message(&e.to_string()), "{e}");
        }
    }

    use super::*;

    #[test]
    fn usernames() {
        assert!(username("alice").is_ok());
        assert!(username("a.b-c_9").is_ok());
        assert!(username("ab").is_err());
        assert!(username(&"a".repeat(33)).is_err());
        assert!(username("alice smith").is_err());
        assert!(username("ålice").is_err());
        assert!(username("<script>").is_err());
    }

    #[test]
    fn passwords_count_characters() {
        assert!(password("1234567").is_err());
        assert!(password("12345678").is_ok());
        assert!(password(&"é".repeat(128)).is_ok());
        assert!(password(&"x".repeat(129)).is_err());
    }

    #[test]
    fn next_is_same_site_only() {
        assert_eq!(safe_next(Some("/profile")).as_deref(), Some("/profile"));
        assert_eq!(safe_next(Some("/a?b=c")).as_deref(), Some("/a?b=c"));
        for bad in [
            "//evil.example",
            "https://evil.example",
            "/\\evil.example",
            "javascript:alert(1)",
            "",
            "/a b",
            "/\u{0}",
        ] {
            assert_eq!(safe_next(Some(bad)), None, "{bad:?}");
        }
        assert_eq!(safe_next(None), None);
    }
}
