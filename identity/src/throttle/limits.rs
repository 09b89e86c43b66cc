//! The limits: what each allows, and the keys they count on.

use std::{
    net::{IpAddr, Ipv6Addr},
    time::Duration,
};

/// Attempts in a row allowed on one account from one address.
pub const PAIR_BURST: u32 = 5;
/// After the burst, one more attempt on that account from that address every so often.
pub const PAIR_PERIOD: Duration = Duration::from_secs(60);
/// Attempts in a row allowed on one account from all unknown devices together.
pub const ACCOUNT_BURST: u32 = 100;
/// After the burst, 100 an hour.
pub const ACCOUNT_PERIOD: Duration = Duration::from_secs(36);
/// Attempts in a row allowed from one address: several people may share one (NAT, offices).
pub const ADDRESS_BURST: u32 = 30;
/// After the burst, one more attempt from the address every so often.
pub const ADDRESS_PERIOD: Duration = Duration::from_secs(10);
/// Attempts in a row allowed through one device proof: as a pair's.
pub const DEVICE_BURST: u32 = PAIR_BURST;
/// After the burst, one more attempt through the proof every so often.
pub const DEVICE_PERIOD: Duration = PAIR_PERIOD;
/// Attempts through one device proof with no success between, after which it is not trusted.
pub const DEVICE_FAILURES: u32 = 10;
/// After that, the proof is trusted for one more attempt every so often.
pub const DEVICE_DISTRUST_PERIOD: Duration = Duration::from_secs(3600);
/// Password checks in a row allowed in one session (password change, account deletion).
pub const SESSION_BURST: u32 = PAIR_BURST;
/// After the burst, one more check in that session every so often.
pub const SESSION_PERIOD: Duration = PAIR_PERIOD;

/// Sign-up attempts in a row allowed from one address.
pub const SIGNUP_BURST: u32 = 30;
/// After the burst, one more sign-up per address every so often.
pub const SIGNUP_PERIOD: Duration = Duration::from_secs(10);

/// Reset links asked for from one client address: 10 at once, then one every 30 seconds. A
/// person who forgot a password asks once or twice; a script walking a list of addresses is
/// held to two a minute per address.
pub const MAIL_FROM_BURST: u32 = 10;
pub const MAIL_FROM_PERIOD: Duration = Duration::from_secs(30);
/// Mails asked for to one account or address, from anywhere (reset links, and every mail to an
/// address not confirmed yet: a sign-up's link, a resend, a change): 3 at once, then one every
/// 5 minutes, so nobody can flood a mailbox (the store also keeps one link a minute per
/// account).
pub const MAIL_TO_BURST: u32 = 3;
pub const MAIL_TO_PERIOD: Duration = Duration::from_secs(300);

/// Wrong second-factor codes in a row allowed on one account (from anywhere: whoever types
/// them knows the password already), then one every 5 minutes: about 300 guesses a day at a
/// one-in-330,000 chance each (three codes of the window out of a million).
pub const CODE_BURST: u32 = 5;
pub const CODE_PERIOD: Duration = Duration::from_secs(300);

/// Passkey ceremonies begun from one client address (each is a row kept a few minutes): the
/// sign-in page begins one at every load, so a generous allowance, then one a second.
pub const CEREMONY_BURST: u32 = 60;
pub const CEREMONY_PERIOD: Duration = Duration::from_secs(1);

/// One limit, with its GCRA parameters: the same wherever the counts live.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Limit {
    Address,
    Pair,
    Account,
    Device,
    DeviceTrust,
    Session,
    SignUp,
    /// Mails asked for by a client (reset links), per client address.
    MailFrom,
    /// Mails asked for to one account or address, whoever asks.
    MailTo,
    /// Second-factor codes tried on one account.
    Code,
    /// Passkey ceremonies begun from one client address.
    Ceremony,
}

impl Limit {
    pub const ALL: [Self; 11] = [
        Self::Address,
        Self::Pair,
        Self::Account,
        Self::Device,
        Self::DeviceTrust,
        Self::Session,
        Self::SignUp,
        Self::MailFrom,
        Self::MailTo,
        Self::Code,
        Self::Ceremony,
    ];

    /// Cells in a row.
    pub fn burst(self) -> u32 {
        match self {
            Self::Address => ADDRESS_BURST,
            Self::Pair => PAIR_BURST,
            Self::Account => ACCOUNT_BURST,
            Self::Device => DEVICE_BURST,
            Self::DeviceTrust => DEVICE_FAILURES,
            Self::Session => SESSION_BURST,
            Self::SignUp => SIGNUP_BURST,
            Self::MailFrom => MAIL_FROM_BURST,
            Self::MailTo => MAIL_TO_BURST,
            Self::Code => CODE_BURST,
            Self::Ceremony => CEREMONY_BURST,
        }
    }

    /// One cell back per period.
    pub fn period(self) -> Duration {
        match self {
            Self::Address => ADDRESS_PERIOD,
            Self::Pair => PAIR_PERIOD,
            Self::Account => ACCOUNT_PERIOD,
            Self::Device => DEVICE_PERIOD,
            Self::DeviceTrust => DEVICE_DISTRUST_PERIOD,
            Self::Session => SESSION_PERIOD,
            Self::SignUp => SIGNUP_PERIOD,
            Self::MailFrom => MAIL_FROM_PERIOD,
            Self::MailTo => MAIL_TO_PERIOD,
            Self::Code => CODE_PERIOD,
            Self::Ceremony => CEREMONY_PERIOD,
        }
    }

    /// Its name in a shared record's key.
    pub(super) fn label(self) -> &'static str {
        match self {
            Self::Address => "address",
            Self::Pair => "pair",
            Self::Account => "account",
            Self::Device => "device",
            Self::DeviceTrust => "device-trust",
            Self::Session => "session",
            Self::SignUp => "sign-up",
            Self::MailFrom => "mail-from",
            Self::MailTo => "mail-to",
            Self::Code => "code",
            Self::Ceremony => "ceremony",
        }
    }

    pub(super) fn index(self) -> usize {
        self as usize
    }
}

/// The key of a client address: the IPv4 address, or the /64 of an IPv6 one.
pub fn address_key(addr: IpAddr) -> String {
    match addr {
        IpAddr::V4(v4) => v4.to_string(),
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => v4.to_string(),
            None => {
                let prefix = u128::from(v6) & !((1u128 << 64) - 1);
                format!("{}/64", Ipv6Addr::from(prefix))
            }
        },
    }
}

pub(super) fn optional_address_key(addr: Option<IpAddr>) -> String {
    addr.map_or_else(|| "unknown".to_string(), address_key)
}

pub(super) fn account_key(username: &str) -> String {
    // Usernames are case-insensitive, so is their throttle.
    username.trim().to_ascii_lowercase()
}

pub(super) fn pair_key(username: &str, addr: Option<IpAddr>) -> String {
    format!("{} {}", account_key(username), optional_address_key(addr))
}

pub(super) fn secs_ceil(d: Duration) -> u64 {
    (d.as_secs() + u64::from(d.subsec_nanos() > 0)).max(1)
}
