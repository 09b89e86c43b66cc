//! Recovery codes: ten per account, shown once, each accepted once in place of an
//! authenticator's code. A code is 10 characters of Crockford's base32 (50 random bits), shown
//! as `xxxxx-xxxxx`; only its MAC under the server's factor key is stored.

use super::key::FactorKey;

/// Codes in a set.
pub const COUNT: usize = 10;
/// Characters in a code (without the dash).
const LEN: usize = 10;
/// Crockford's base32: no I, L, O or U, so nothing reads as something else.
const ALPHABET: &[u8; 32] = b"0123456789abcdefghjkmnpqrstvwxyz";

/// A new set of codes, as shown to the person.
pub fn generate() -> Vec<String> {
    (0..COUNT)
        .map(|_| {
            let chars: String = (0..LEN)
                .map(|_| ALPHABET[usize::from(rand::random::<u8>() & 31)] as char)
                .collect();
            format!("{}-{}", &chars[..5], &chars[5..])
        })
        .collect()
}

/// A code as typed, in its one spelling: lower case, without dashes or spaces, the letters
/// people mistake for digits read as those digits. `None` when it cannot be a code.
pub fn normalise(typed: &str) -> Option<String> {
    let mut out = String::with_capacity(LEN);
    for c in typed.chars() {
        let c = match c.to_ascii_lowercase() {
            ' ' | '-' | '\t' | '\u{a0}' => continue,
            'o' => '0',
            'i' | 'l' => '1',
            c if c.is_ascii() && ALPHABET.contains(&(c as u8)) => c,
            _ => return None,
        };
        if out.len() == LEN {
            return None;
        }
        out.push(c);
    }
    (out.len() == LEN).then_some(out)
}

/// What is stored of a (normalised) code.
pub fn hash(key: &FactorKey, normalised: &str) -> Vec<u8> {
    key.mac(b"recovery code", normalised.as_bytes()).to_vec()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_are_ten_distinct_and_read_back_in_any_spelling() {
        let codes = generate();
        assert_eq!(codes.len(), COUNT);
        let set: std::collections::HashSet<_> = codes.iter().collect();
        assert_eq!(set.len(), COUNT);
        for code in &codes {
            assert_eq!(code.len(), 11);
            let n = normalise(code).unwrap();
            assert_eq!(normalise(&code.to_uppercase()).unwrap(), n);
            assert_eq!(
                normalise(&format!(" {} ", code.replace('-', " "))).unwrap(),
                n
            );
        }
        assert_eq!(normalise("O1IL0-abcde").unwrap(), "01110abcde");
        for bad in [
            "",
            "abcde",
            "abcde-fghjk-m",
            "abcde-fghj!",
            "abcdé-fghjk",
            "123456",
        ] {
            assert_eq!(normalise(bad), None, "{bad}");
        }
        let key = FactorKey::derive(b"a secret of at least thirty-two bytes!");
        assert_eq!(hash(&key, "0123456789"), hash(&key, "0123456789"));
        assert_ne!(hash(&key, "0123456789"), hash(&key, "0123456788"));
    }
}
