//! An account's e-mail address as it is kept: trimmed, its domain lower-cased, nothing else
//! rewritten (the local part is the mailbox owner's business: `John.Doe` and `john.doe` may be
//! two mailboxes), at most 254 characters, ASCII, and a valid address by a real parser's
//! account (the `email_address` crate, RFC 5321/5322), without a display name or a bracketed IP
//! literal.
//! Addresses are then compared without regard to case, by the database's collation.

/// The longest address kept (RFC 5321's path limit, less its brackets).
pub const MAX_LEN: usize = 254;

/// Why a typed address was refused, in words a person can act on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum AddressError {
    #[error("Enter an e-mail address.")]
    Empty,
    #[error("An e-mail address has at most 254 characters.")]
    TooLong,
    #[error("That is not an e-mail address: it should look like name@example.com.")]
    Invalid,
    #[error(
        "Use the address in plain letters and digits: a domain with accents in its xn-- form, \
         and no accented letters before the @."
    )]
    NotAscii,
}

/// `typed` as an account keeps it (see the module's documentation).
pub fn normalise(typed: &str) -> Result<String, AddressError> {
    let trimmed = typed.trim();
    if trimmed.is_empty() {
        return Err(AddressError::Empty);
    }
    if trimmed.chars().count() > MAX_LEN {
        return Err(AddressError::TooLong);
    }
    // ASCII only: the databases compare addresses without regard to case, and PostgreSQL's
    // collation would also take a full-width letter or an invisible character for another
    // (`alice` and `al\u{ad}ice` equal), which would make endless spellings of one address.
    if !trimmed.is_ascii() {
        return Err(AddressError::NotAscii);
    }
    let (local, domain) = trimmed.rsplit_once('@').ok_or(AddressError::Invalid)?;
    let address = format!("{local}@{}", domain.to_lowercase());
    if address.chars().count() > MAX_LEN {
        return Err(AddressError::TooLong);
    }
    let options = email_address::Options {
        minimum_sub_domains: 2,
        allow_domain_literal: false,
        allow_display_text: false,
        allow_long_local_parts: false,
    };
    email_address::EmailAddress::parse_with_options(&address, options)
        .map_err(|_| AddressError::Invalid)?;
    Ok(address)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn trims_and_lower_cases_the_domain_only() {
        assert_eq!(
            normalise("  John.Doe@Example.COM \n").as_deref(),
            Ok("John.Doe@example.com")
        );
        assert_eq!(
            normalise("a+tag@b.example").as_deref(),
            Ok("a+tag@b.example")
        );
    }

    #[test]
    fn refuses_what_is_not_an_address() {
        for bad in [
            "plain",
            "@example.com",
            "a@",
            "a@localhost",
            "a@@example.com",
            "Jo <jo@example.com>",
            "jo@[127.0.0.1]",
            "jo @example.com",
            "jo@exa mple.com",
            "jo@example.com\r\nBcc: x@example.com",
        ] {
            assert_eq!(normalise(bad), Err(AddressError::Invalid), "{bad:?}");
        }
        assert_eq!(normalise("   "), Err(AddressError::Empty));
        for unicode in [
            "al\u{ad}ice@example.com",
            "ａlice@example.com",
            "jo@bücher.de",
        ] {
            assert_eq!(
                normalise(unicode),
                Err(AddressError::NotAscii),
                "{unicode:?}"
            );
        }
        assert_eq!(
            normalise("jo@xn--bcher-kva.de").as_deref(),
            Ok("jo@xn--bcher-kva.de")
        );
    }

    #[test]
    fn at_most_254_characters() {
        let domain = format!("{}.example", "d".repeat(60));
        let local = "l".repeat(64);
        let fits = format!("{local}@{}.{}.{}", domain, "e".repeat(60), "f".repeat(55));
        assert!(fits.chars().count() <= MAX_LEN, "{}", fits.len());
        let long = format!("{}@example.com", "a".repeat(250));
        assert_eq!(normalise(&long), Err(AddressError::TooLong));
    }
}
