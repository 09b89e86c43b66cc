//! What a genuine refresh token is worth: [`decide`], a pure function of the session as read,
//! the token's generation, the time and the lifetimes. [`Sessions::rotate`](super::Sessions::rotate)
//! does what it says (the compare-and-swap, the write, ending the session) and reads again
//! when a write finds the row changed.

use super::model::{secs, Lifetimes, Session};

/// What to do with a genuine refresh token, given its session as read.
///
/// | presented generation | session | decision |
/// |---|---|---|
/// | any | ended | [`Ended`](Self::Ended) |
/// | any | expired or idle | [`Expired`](Self::Expired) |
/// | the current one | live | [`Rotate`](Self::Rotate): the generation moves on (compare-and-swap) |
/// | the one before | live, rotated less than `reuse` ago | the current pair (two tabs at once) |
/// | the one before | live, the current one not yet seen in use, rotated less than an access lifetime ago | the current pair (the answer of the last rotation may have been lost) |
/// | any other | live | [`Reuse`](Self::Reuse): the session is ended |
///
/// The current pair is answered again with no write ([`AnswerAgain`](Self::AnswerAgain)), so a
/// crowd replaying the previous token costs reads, never a turn at the write lock; unless so
/// little is left of the pair's access tokens that the answer would be born nearly expired
/// ([`Extend`](Self::Extend)).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    /// Refused: the session was ended.
    Ended,
    /// Refused: the session is past its absolute or its idle end.
    Expired,
    /// The current generation: rotate it, and issue an access token until `token_exp`.
    Rotate { token_exp: i64 },
    /// The previous generation, in its grace: the current pair again, with no write. Its
    /// access token ends no later than those already issued for the generation
    /// (`access_exp`), so an ended session is still remembered for as long as any of them
    /// lives.
    AnswerAgain { token_exp: i64 },
    /// The previous generation, in its grace, but the pair's access tokens are nearly
    /// expired: `access_exp` moves on to `token_exp` first (a write, on this rare path only),
    /// then the current pair is answered with an access token until `token_exp`.
    Extend { token_exp: i64 },
    /// A genuine token of this session that was rotated away: it was copied. The session
    /// ends (RFC 9700 §4.14.2).
    Reuse,
}

impl Decision {
    /// Whether the decision answers tokens, and so spends the session's refresh allowance:
    /// an ended session and a reuse are final answers, given whatever the allowance.
    pub fn answers_tokens(self) -> bool {
        matches!(
            self,
            Self::Rotate { .. } | Self::AnswerAgain { .. } | Self::Extend { .. }
        )
    }
}

/// What to do with a genuine refresh token of generation `presented` (its MAC already
/// checked) for `session` as read at `now`. Whether the session is known to have ended
/// since it was read (the in-memory set) is the caller's to ask, before answering again.
pub fn decide(session: &Session, presented: i64, now: i64, lifetimes: &Lifetimes) -> Decision {
    if session.revoked_at.is_some() {
        return Decision::Ended;
    }
    if !session.is_live(now, lifetimes) {
        return Decision::Expired;
    }
    let token_exp = lifetimes.token_exp(now, session.expires_at);
    if presented == session.generation {
        return Decision::Rotate { token_exp };
    }
    let since = now - session.rotated_at;
    let within_grace = (0..=secs(lifetimes.reuse)).contains(&since);
    // Not yet seen in use, and rotated no longer ago than an access token lives: the answer
    // that carried it may have been lost. (Unbounded, this would let whoever holds the
    // previous token follow a session that is renewed without its new pair being used,
    // rotation after rotation.)
    let undelivered = session.confirmed_generation < session.generation
        && (0..=secs(lifetimes.access)).contains(&since);
    let is_previous = presented + 1 == session.generation && (within_grace || undelivered);
    if !is_previous {
        return Decision::Reuse;
    }
    let capped = token_exp.min(session.access_exp);
    if capped - now >= lifetimes.min_grace_life() {
        Decision::AnswerAgain { token_exp: capped }
    } else {
        Decision::Extend { token_exp }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sessions::SessionId;
    use std::time::Duration;
    use Decision::*;

    const NOW: i64 = 1_000_000;

    /// A live session at generation 5, rotated 100 s ago with its pair already in use, whose
    /// access tokens live until `NOW + 800`.
    fn session() -> Session {
        Session {
            id: SessionId(uuid::Uuid::from_u128(1)),
            user_id: 1,
            refresh_key: vec![0; 32],
            generation: 5,
            confirmed_generation: 5,
            rotated_at: NOW - 100,
            created_at: NOW - 86_400,
            last_used_at: NOW - 100,
            expires_at: NOW + 20 * 86_400,
            access_exp: NOW + 800,
            user_agent: String::new(),
            address: String::new(),
            revoked_at: None,
            revoked_reason: None,
            auth_method: "password".into(),
            authenticated_at: NOW - 86_400,
        }
    }

    /// Every row of the table, with the default lifetimes (access 900 s, idle 7 days, reuse
    /// 10 s) unless the row says otherwise: the session as read, the generation presented,
    /// and the decision.
    #[test]
    fn every_row_of_the_table() {
        let live = session();
        let lifetimes = Lifetimes::default();
        let short = Lifetimes {
            access: Duration::from_secs(30),
            ..lifetimes
        };
        let rotated = |ago: i64| Session {
            rotated_at: NOW - ago,
            ..live.clone()
        };
        let unconfirmed = |ago: i64| Session {
            confirmed_generation: 4,
            ..rotated(ago)
        };
        let ended = Session {
            revoked_at: Some(NOW - 1),
            revoked_reason: Some("revoked".into()),
            ..live.clone()
        };
        #[rustfmt::skip]
        let rows: Vec<(&str, Session, i64, Lifetimes, Decision)> = vec![
            // Over, whatever is presented; ended wins over expired, and over reuse.
            ("ended, current", ended.clone(), 5, lifetimes, Ended),
            ("ended, previous in grace", Session { rotated_at: NOW - 1, ..ended.clone() }, 4, lifetimes, Ended),
            ("ended, older", ended.clone(), 2, lifetimes, Ended),
            ("ended and expired", Session { expires_at: NOW, ..ended.clone() }, 5, lifetimes, Ended),
            ("absolute end reached", Session { expires_at: NOW, ..live.clone() }, 5, lifetimes, Expired),
            ("absolute end reached, previous in grace", Session { expires_at: NOW, ..rotated(1) }, 4, lifetimes, Expired),
            ("idle end reached", Session { last_used_at: NOW - 7 * 86_400, ..live.clone() }, 5, lifetimes, Expired),
            ("idle end reached, older", Session { last_used_at: NOW - 7 * 86_400, ..live.clone() }, 1, lifetimes, Expired),
            ("idle end a second away", Session { last_used_at: NOW - 7 * 86_400 + 1, ..live.clone() }, 5, lifetimes, Rotate { token_exp: NOW + 900 }),
            // The current generation rotates, its access token never outliving the session.
            ("current", live.clone(), 5, lifetimes, Rotate { token_exp: NOW + 900 }),
            ("current, near the absolute end", Session { expires_at: NOW + 60, ..live.clone() }, 5, lifetimes, Rotate { token_exp: NOW + 60 }),
            ("current, rotated this very second", rotated(0), 5, lifetimes, Rotate { token_exp: NOW + 900 }),
            ("current, unconfirmed", unconfirmed(5), 5, lifetimes, Rotate { token_exp: NOW + 900 }),
            ("current, short access lifetime", live.clone(), 5, short, Rotate { token_exp: NOW + 30 }),
            // The previous generation within the reuse interval: two tabs at once.
            ("previous, rotated now", rotated(0), 4, lifetimes, AnswerAgain { token_exp: NOW + 800 }),
            ("previous, 5 s after", rotated(5), 4, lifetimes, AnswerAgain { token_exp: NOW + 800 }),
            ("previous, at the end of the interval", rotated(10), 4, lifetimes, AnswerAgain { token_exp: NOW + 800 }),
            ("previous, past the interval, pair in use", rotated(11), 4, lifetimes, Reuse),
            // The previous generation, the pair never seen in use: the answer may have been lost.
            ("previous, pair unused, 11 s after", unconfirmed(11), 4, lifetimes, AnswerAgain { token_exp: NOW + 800 }),
            ("previous, pair unused, an access lifetime after", Session { access_exp: NOW + 100, ..unconfirmed(900) }, 4, lifetimes, AnswerAgain { token_exp: NOW + 100 }),
            ("previous, pair unused, past an access lifetime", unconfirmed(901), 4, lifetimes, Reuse),
            ("previous, pair unused, short access lifetime", Session { access_exp: NOW + 20, ..unconfirmed(25) }, 4, short, AnswerAgain { token_exp: NOW + 20 }),
            ("previous, pair unused, past a short access lifetime", unconfirmed(31), 4, short, Reuse),
            // A clock stepped back, or a password change (`rotated_at = 0`): no grace.
            ("previous, rotated in the future", rotated(-1), 4, lifetimes, Reuse),
            ("previous, pair unused, rotated in the future", unconfirmed(-1), 4, lifetimes, Reuse),
            ("previous, after a password change", Session { rotated_at: 0, ..live.clone() }, 4, lifetimes, Reuse),
            // Answered again, never born nearly expired: below a minute left (or half a short
            // access lifetime), `access_exp` moves on first.
            ("previous, a minute left", Session { access_exp: NOW + 60, ..rotated(1) }, 4, lifetimes, AnswerAgain { token_exp: NOW + 60 }),
            ("previous, 59 s left", Session { access_exp: NOW + 59, ..rotated(1) }, 4, lifetimes, Extend { token_exp: NOW + 900 }),
            ("previous, pair unused, expired", Session { access_exp: NOW - 5, ..unconfirmed(600) }, 4, lifetimes, Extend { token_exp: NOW + 900 }),
            ("previous, 15 s left of 30", Session { access_exp: NOW + 15, ..rotated(1) }, 4, short, AnswerAgain { token_exp: NOW + 15 }),
            ("previous, 14 s left of 30", Session { access_exp: NOW + 14, ..rotated(1) }, 4, short, Extend { token_exp: NOW + 30 }),
            ("previous, near the absolute end", Session { expires_at: NOW + 30, ..rotated(1) }, 4, lifetimes, Extend { token_exp: NOW + 30 }),
            // Any other generation is reuse, even within the interval.
            ("two before, in the interval", rotated(1), 3, lifetimes, Reuse),
            ("the first, long ago", live.clone(), 1, lifetimes, Reuse),
            ("generation 0", rotated(1), 0, lifetimes, Reuse),
            ("a generation ahead of the row", rotated(1), 6, lifetimes, Reuse),
            ("negative", rotated(1), -1, lifetimes, Reuse),
        ];
        for (row, session, presented, lifetimes, expected) in rows {
            assert_eq!(
                decide(&session, presented, NOW, &lifetimes),
                expected,
                "{row}"
            );
        }
    }

    /// Only what answers tokens spends the session's allowance.
    #[test]
    fn only_answers_spend_the_allowance() {
        for (decision, spends) in [
            (Ended, false),
            (Expired, false),
            (Reuse, false),
            (Rotate { token_exp: 0 }, true),
            (AnswerAgain { token_exp: 0 }, true),
            (Extend { token_exp: 0 }, true),
        ] {
            assert_eq!(decision.answers_tokens(), spends, "{decision:?}");
        }
    }
}
