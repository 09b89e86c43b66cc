//! Authenticator-app codes (TOTP, RFC 6238): SHA-1, 6 digits, 30-second steps, the codes of one
//! step either side accepted for clock drift. Each code is accepted once: the step of the last
//! accepted code is stored, and only a later step's code is accepted after it (see
//! [`TotpSecret::matching_step`]).

use totp_rs::{Algorithm, Secret, TOTP};

/// Digits in a code.
pub const DIGITS: usize = 6;
/// Seconds in a step.
pub const STEP: i64 = 30;
/// Bytes of a new secret (160 bits, as RFC 4226 recommends).
const SECRET_BYTES: usize = 20;

/// A TOTP secret in the clear: only in memory, never printed.
#[derive(Clone)]
pub struct TotpSecret(Vec<u8>);

impl std::fmt::Debug for TotpSecret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("TotpSecret(..)")
    }
}

impl TotpSecret {
    pub fn random() -> Self {
        Self((0..SECRET_BYTES).map(|_| rand::random::<u8>()).collect())
    }

    /// The secret as opened from its sealed copy.
    pub fn from_bytes(bytes: Vec<u8>) -> Self {
        Self(bytes)
    }

    /// The secret an authenticator app was given as text (base32, padded or not, any case,
    /// spaces ignored).
    pub fn from_base32(text: &str) -> Option<Self> {
        let clean: String = text
            .chars()
            .filter(|c| !c.is_whitespace() && *c != '=')
            .map(|c| c.to_ascii_uppercase())
            .collect();
        Secret::Encoded(clean).to_bytes().ok().map(Self)
    }

    pub fn as_bytes(&self) -> &[u8] {
        &self.0
    }

    /// In base32 without padding, as authenticator apps take it typed.
    pub fn base32(&self) -> String {
        match Secret::Raw(self.0.clone()).to_encoded() {
            Secret::Encoded(text) => text.trim_end_matches('=').to_owned(),
            Secret::Raw(_) => String::new(),
        }
    }

    fn totp(&self) -> Option<TOTP> {
        TOTP::new(Algorithm::SHA1, DIGITS, 1, STEP as u64, self.0.clone()).ok()
    }

    /// The code of time step `step`.
    pub fn code_at(&self, step: i64) -> Option<String> {
        let at = u64::try_from(step.checked_mul(STEP)?).ok()?;
        Some(self.totp()?.generate(at))
    }

    /// The step whose code `code` is at `now` (the current step, or one either side), if that
    /// step is later than `after` (the last step accepted): the code to accept, and the step to
    /// store. Every candidate is compared, in constant time.
    pub fn matching_step(&self, code: &str, now: i64, after: i64) -> Option<i64> {
        let current = now.div_euclid(STEP);
        let mut found = None;
        for step in [current - 1, current, current + 1] {
            let Some(expected) = self.code_at(step) else {
                continue;
            };
            let same = constant_time_eq(expected.as_bytes(), code.as_bytes());
            if same && step > after && found.is_none() {
                found = Some(step);
            }
        }
        found
    }
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// A code as typed: six digits, with spaces (or a dash) between groups allowed. `None` for
/// anything else.
pub fn normalise_code(typed: &str) -> Option<String> {
    let digits: String = typed
        .chars()
        .filter(|c| !matches!(c, ' ' | '-' | '\u{a0}' | '\t'))
        .collect();
    (digits.len() == DIGITS && digits.bytes().all(|b| b.is_ascii_digit())).then_some(digits)
}

/// The `otpauth://` address an authenticator app reads from the QR code: issuer and account
/// named, the secret in base32.
pub fn otpauth_url(issuer: &str, account: &str, secret: &TotpSecret) -> String {
    use percent_encoding::{utf8_percent_encode, NON_ALPHANUMERIC};
    let issuer_enc = utf8_percent_encode(issuer, NON_ALPHANUMERIC).to_string();
    let account_enc = utf8_percent_encode(account, NON_ALPHANUMERIC).to_string();
    format!(
        "otpauth://totp/{issuer_enc}:{account_enc}?secret={}&issuer={issuer_enc}&algorithm=SHA1&digits={DIGITS}&period={STEP}",
        secret.base32()
    )
}

/// The QR code of `text` as an SVG document (dark modules on white, a quiet zone around),
/// sized by the page.
pub fn qr_svg(text: &str) -> Option<String> {
    let code = qrcode::QrCode::with_error_correction_level(text, qrcode::EcLevel::M).ok()?;
    Some(
        code.render::<qrcode::render::svg::Color<'_>>()
            .min_dimensions(200, 200)
            .dark_color(qrcode::render::svg::Color("#000000"))
            .light_color(qrcode::render::svg::Color("#ffffff"))
            .quiet_zone(true)
            .build(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    /// RFC 6238's test vector for SHA-1 (the 20-byte secret "12345678901234567890"), cut to
    /// six digits.
    #[test]
    fn codes_are_rfc_6238s() {
        let secret = TotpSecret::from_bytes(b"12345678901234567890".to_vec());
        assert_eq!(secret.code_at(59 / STEP).unwrap(), "287082");
        assert_eq!(secret.code_at(1_111_111_109 / STEP).unwrap(), "081804");
        assert_eq!(secret.code_at(2_000_000_000 / STEP).unwrap(), "279037");
        assert_eq!(secret.base32(), "GEZDGNBVGY3TQOJQGEZDGNBVGY3TQOJQ");
        let back = TotpSecret::from_base32("gezd gnbv gy3t qojq gezd gnbv gy3t qojq").unwrap();
        assert_eq!(back.as_bytes(), secret.as_bytes());
    }

    #[test]
    fn a_code_matches_its_step_and_one_either_side_once() {
        let secret = TotpSecret::random();
        let now = 1_800_000_000;
        let current = now / STEP;
        for step in [current - 1, current, current + 1] {
            let code = secret.code_at(step).unwrap();
            assert_eq!(secret.matching_step(&code, now, 0), Some(step));
            // Accepted once: not again, nor after a later step.
            assert_eq!(secret.matching_step(&code, now, step), None);
            assert_eq!(secret.matching_step(&code, now, step + 1), None);
        }
        let old = secret.code_at(current - 2).unwrap();
        let early = secret.code_at(current + 2).unwrap();
        for code in [old, early] {
            // (A code may by chance equal one of the window's: skip that case.)
            if (current - 1..=current + 1).all(|s| secret.code_at(s).unwrap() != code) {
                assert_eq!(secret.matching_step(&code, now, 0), None);
            }
        }
        assert_eq!(secret.matching_step("", now, 0), None);
        assert_eq!(secret.matching_step("12345", now, 0), None);
    }

    #[test]
    fn typed_codes_are_six_digits() {
        assert_eq!(normalise_code(" 123 456 ").as_deref(), Some("123456"));
        assert_eq!(normalise_code("123-456").as_deref(), Some("123456"));
        for bad in ["12345", "1234567", "12345a", "١٢٣٤٥٦", ""] {
            assert_eq!(normalise_code(bad), None, "{bad}");
        }
    }

    #[test]
    fn the_qr_code_is_an_svg_of_the_address() {
        let secret = TotpSecret::random();
        let url = otpauth_url("Auth App", "alice", &secret);
        assert!(url.starts_with("otpauth://totp/Auth%20App:alice?secret="));
        assert!(url.contains(&secret.base32()));
        let svg = qr_svg(&url).unwrap();
        assert!(svg.contains("<svg") && svg.contains("</svg>"));
    }
}
