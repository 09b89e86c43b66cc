//! A session's device as a person reads it on the sessions page, from its user agent.

/// User agents are kept up to this many characters.
pub const USER_AGENT_MAX: usize = 200;

/// The device as a person says it ("Chrome on Linux"), from the user agent.
pub fn describe_device(user_agent: &str) -> String {
    let known = |s: &str| !s.is_empty() && s != "UNKNOWN";
    match woothee::parser::Parser::new().parse(user_agent) {
        Some(ua) if known(ua.name) && known(ua.os) => format!("{} on {}", ua.name, ua.os),
        Some(ua) if known(ua.name) => ua.name.to_string(),
        _ if user_agent.trim().is_empty() => "Unknown device".into(),
        _ => "Unknown browser".into(),
    }
}

/// `Chrome 120` on `Linux`, trimmed to [`USER_AGENT_MAX`] characters of printable text.
pub fn trim_user_agent(user_agent: &str) -> String {
    user_agent
        .chars()
        .filter(|c| !c.is_control())
        .take(USER_AGENT_MAX)
        .collect::<String>()
        .trim()
        .to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn devices_are_named_as_a_person_would() {
        let chrome = "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) \
                      Chrome/120.0.0.0 Safari/537.36";
        assert_eq!(describe_device(chrome), "Chrome on Linux");
        let firefox = "Mozilla/5.0 (Windows NT 10.0; Win64; x64; rv:121.0) Gecko/20100101 \
                       Firefox/121.0";
        assert_eq!(describe_device(firefox), "Firefox on Windows 10");
        assert_eq!(describe_device(""), "Unknown device");
        assert_eq!(describe_device("\u{0}\u{ff}zzz"), "Unknown browser");
    }

    #[test]
    fn user_agents_are_trimmed_to_printable_text() {
        assert_eq!(
            trim_user_agent("  Mozilla/5.0\r\n(X11)\0 "),
            "Mozilla/5.0(X11)"
        );
        assert_eq!(
            trim_user_agent(&"é".repeat(500)).chars().count(),
            USER_AGENT_MAX
        );
    }
}
