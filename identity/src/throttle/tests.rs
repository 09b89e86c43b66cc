use super::*;
use governor::clock::FakeRelativeClock;
use std::net::{Ipv4Addr, Ipv6Addr};

type Fake = Throttle<FakeRelativeClock>;

fn v4(last: u8) -> Option<IpAddr> {
    Some(IpAddr::V4(Ipv4Addr::new(10, 0, 0, last)))
}

fn throttle() -> (FakeRelativeClock, Fake) {
    let clock = FakeRelativeClock::default();
    (clock.clone(), Throttle::with_clock(clock, MAX_KEYS))
}

/// A sign-in attempt as `login` counts it: the address, then the account's path.
async fn attempt(
    t: &Fake,
    name: &str,
    addr: Option<IpAddr>,
    device: Option<DeviceId>,
) -> Result<Via, Throttled> {
    t.sign_in_from(addr).await?;
    t.sign_in(name, addr, device).await
}

async fn unknown(t: &Fake, name: &str, addr: Option<IpAddr>) -> Result<Via, Throttled> {
    attempt(t, name, addr, None).await
}

fn wait(result: Result<Via, Throttled>) -> Option<u64> {
    match result {
        Err(Throttled::TooMany { retry_after }) => Some(retry_after),
        _ => None,
    }
}

/// Uses up `name`'s account-wide ceiling the way a distributed attack does: every address
/// stays inside its pair allowance. Returns how many attempts got through.
async fn drain_the_account(t: &Fake, name: &str) -> u32 {
    let mut allowed = 0;
    for i in 0..=u8::MAX {
        for _ in 0..PAIR_BURST {
            let addr = Some(IpAddr::V4(Ipv4Addr::new(10, 9, 0, i)));
            if unknown(t, name, addr).await.is_ok() {
                allowed += 1;
            }
        }
    }
    allowed
}

#[test]
fn the_limits_are_indexed_in_order() {
    for (i, limit) in Limit::ALL.iter().enumerate() {
        assert_eq!(limit.index(), i, "{limit:?}");
    }
}

#[tokio::test]
async fn a_pair_may_try_its_burst_then_once_per_period() {
    let (clock, t) = throttle();
    for _ in 0..PAIR_BURST {
        assert_eq!(unknown(&t, "alice", v4(1)).await, Ok(Via::Unknown));
    }
    // Used up, case-insensitively, with the wait until the next.
    assert_eq!(
        unknown(&t, "ALICE", v4(1)).await,
        Err(Throttled::TooMany {
            retry_after: PAIR_PERIOD.as_secs()
        })
    );
    // The same account from another address is not affected.
    assert!(unknown(&t, "alice", v4(2)).await.is_ok());
    clock.advance(PAIR_PERIOD / 2);
    assert_eq!(
        wait(unknown(&t, "alice", v4(1)).await),
        Some(PAIR_PERIOD.as_secs() / 2)
    );
    clock.advance(PAIR_PERIOD / 2);
    assert!(unknown(&t, "alice", v4(1)).await.is_ok());
    assert!(unknown(&t, "alice", v4(1)).await.is_err());
}

#[tokio::test]
async fn an_account_has_a_ceiling_across_addresses() {
    let (_clock, t) = throttle();
    assert_eq!(drain_the_account(&t, "target").await, ACCOUNT_BURST);
    // Every unknown device is now refused on that account, and nobody else is affected.
    assert!(
        wait(unknown(&t, "target", Some(IpAddr::V4(Ipv4Addr::new(192, 0, 2, 1)))).await).is_some()
    );
    assert!(unknown(&t, "bystander", v4(1)).await.is_ok());
}

#[tokio::test]
async fn an_address_that_tries_many_accounts_is_refused() {
    let (_clock, t) = throttle();
    for i in 0..ADDRESS_BURST {
        assert!(unknown(&t, &format!("user{i}"), v4(1)).await.is_ok());
    }
    assert!(unknown(&t, "someone-new", v4(1)).await.is_err());
    assert!(unknown(&t, "someone-new", v4(2)).await.is_ok());
    // The refused attempt created no record for the account it named.
    assert_eq!(t.tracked(Limit::Account), ADDRESS_BURST as usize + 1);
    // A known device is refused at that address too: the address is asked first.
    let device = Some(DeviceId::random());
    assert!(wait(attempt(&t, "user0", v4(1), device).await).is_some());
}

#[tokio::test]
async fn success_forgives_the_pair_only() {
    let (_clock, t) = throttle();
    for _ in 0..PAIR_BURST {
        unknown(&t, "dave", v4(1)).await.unwrap();
    }
    assert!(unknown(&t, "dave", v4(1)).await.is_err());
    t.signed_in("Dave", v4(1), Via::Unknown).await;
    assert!(unknown(&t, "dave", v4(1)).await.is_ok());
    // The address's count is kept.
    for i in 0..ADDRESS_BURST {
        let _ = unknown(&t, &format!("x{i}"), v4(3)).await;
    }
    t.signed_in("x0", v4(3), Via::Unknown).await;
    assert!(unknown(&t, "x0", v4(3)).await.is_err());
}

/// The owner's device is counted on its own allowance: a drained account ceiling and a
/// used-up pair at the owner's own address do not refuse it, and its attempts take nothing
/// from either.
#[tokio::test]
async fn a_known_device_has_its_own_allowance() {
    let (clock, t) = throttle();
    assert_eq!(drain_the_account(&t, "owner").await, ACCOUNT_BURST);
    for _ in 0..PAIR_BURST {
        let _ = unknown(&t, "owner", v4(7)).await;
    }
    assert!(unknown(&t, "owner", v4(7)).await.is_err());
    let (accounts, pairs) = (t.tracked(Limit::Account), t.tracked(Limit::Pair));

    let phone = DeviceId::random();
    for _ in 0..DEVICE_BURST {
        assert_eq!(
            attempt(&t, "owner", v4(7), Some(phone)).await,
            Ok(Via::Device(phone))
        );
    }
    // Its own allowance used up: refused with its own wait.
    assert_eq!(
        wait(attempt(&t, "owner", v4(7), Some(phone)).await),
        Some(DEVICE_PERIOD.as_secs())
    );
    // Another device of the owner's is not affected, nor is the unknown path changed.
    let laptop = DeviceId::random();
    assert_eq!(
        attempt(&t, "owner", v4(8), Some(laptop)).await,
        Ok(Via::Device(laptop))
    );
    assert_eq!(
        (t.tracked(Limit::Account), t.tracked(Limit::Pair)),
        (accounts, pairs)
    );
    // A success forgives the device's records.
    t.signed_in("owner", v4(7), Via::Device(phone)).await;
    assert_eq!(
        attempt(&t, "owner", v4(7), Some(phone)).await,
        Ok(Via::Device(phone))
    );
    clock.advance(DEVICE_PERIOD);
    assert!(attempt(&t, "owner", v4(7), Some(phone)).await.is_ok());
}

/// After DEVICE_FAILURES attempts through one proof with no success between, the proof is
/// not trusted: its attempts are counted as an unknown device's (on the pair and the
/// ceiling), until the device-trust allowance gives one back.
#[tokio::test]
async fn a_device_used_for_too_many_failures_is_no_longer_trusted() {
    let (clock, t) = throttle();
    let stolen = DeviceId::random();
    let mut trusted = 0;
    let mut last = Err(Throttled::Unavailable);
    // The device allowance refills one a minute: the failures go on at that pace.
    for _ in 0..DEVICE_FAILURES * 2 {
        last = attempt(&t, "victim", v4(1), Some(stolen)).await;
        match last {
            Ok(Via::Device(_)) => trusted += 1,
            Ok(Via::Unknown) => break,
            Err(_) => clock.advance(DEVICE_PERIOD),
        }
    }
    assert_eq!(trusted, DEVICE_FAILURES);
    assert_eq!(last, Ok(Via::Unknown));
    assert_eq!(t.tracked(Limit::Pair), 1);
    // So once the account's ceiling is drained, the stolen proof is refused like any
    // unknown device, though its own allowance has an attempt left.
    clock.advance(DEVICE_PERIOD);
    drain_the_account(&t, "victim").await;
    assert_eq!(
        attempt(&t, "victim", v4(1), Some(stolen)).await,
        Err(Throttled::TooMany {
            retry_after: ACCOUNT_PERIOD.as_secs()
        })
    );
    // Trusted again for one attempt once the trust allowance gives one back.
    clock.advance(DEVICE_DISTRUST_PERIOD);
    assert_eq!(
        attempt(&t, "victim", v4(1), Some(stolen)).await,
        Ok(Via::Device(stolen))
    );
    clock.advance(DEVICE_PERIOD);
    assert_eq!(
        attempt(&t, "victim", v4(1), Some(stolen)).await,
        Ok(Via::Unknown)
    );
}

/// A signed-in owner's password checks count per session: a drained account does not
/// refuse them, and one session's checks do not use another's.
#[tokio::test]
async fn password_checks_count_per_session() {
    let (clock, t) = throttle();
    drain_the_account(&t, "owner").await;
    let (session, other) = (uuid::Uuid::new_v4(), uuid::Uuid::new_v4());
    for _ in 0..SESSION_BURST {
        assert_eq!(t.password_check(session).await, Ok(()));
    }
    assert_eq!(
        t.password_check(session).await,
        Err(Throttled::TooMany {
            retry_after: SESSION_PERIOD.as_secs()
        })
    );
    assert_eq!(t.password_check(other).await, Ok(()));
    t.password_checked(session).await;
    assert_eq!(t.password_check(session).await, Ok(()));
    clock.advance(SESSION_PERIOD);
    assert_eq!(t.password_check(session).await, Ok(()));
}

#[test]
fn ipv6_is_keyed_by_its_64() {
    let a: IpAddr = "2001:db8:1:2::1".parse().unwrap();
    let b: IpAddr = "2001:db8:1:2:ffff:ffff:ffff:ffff".parse().unwrap();
    let other: IpAddr = "2001:db8:1:3::1".parse().unwrap();
    assert_eq!(address_key(a), "2001:db8:1:2::/64");
    assert_eq!(address_key(a), address_key(b));
    assert_ne!(address_key(a), address_key(other));
    let mapped: IpAddr = "::ffff:192.0.2.7".parse().unwrap();
    assert_eq!(address_key(mapped), "192.0.2.7");
}

#[tokio::test]
async fn one_host_rotating_through_its_64_is_one_address() {
    let b: IpAddr = "2001:db8:1:2:ffff:ffff:ffff:ffff".parse().unwrap();
    let other: IpAddr = "2001:db8:1:3::1".parse().unwrap();
    let (_clock, t) = throttle();
    for i in 0..SIGNUP_BURST {
        let addr = Ipv6Addr::from(
            u128::from(Ipv6Addr::from([0x2001, 0xdb8, 1, 2, 0, 0, 0, 0])) + u128::from(i) * 7919,
        );
        assert!(t.sign_up(Some(IpAddr::V6(addr))).await.is_ok());
    }
    assert!(t.sign_up(Some(b)).await.is_err());
    assert!(t.sign_up(Some(other)).await.is_ok());
}

#[tokio::test]
async fn an_address_may_sign_up_its_burst_then_once_per_period() {
    let (clock, t) = throttle();
    for _ in 0..SIGNUP_BURST {
        assert!(t.sign_up(v4(1)).await.is_ok());
    }
    assert_eq!(
        t.sign_up(v4(1)).await,
        Err(Throttled::TooMany {
            retry_after: SIGNUP_PERIOD.as_secs()
        })
    );
    assert!(t.sign_up(v4(2)).await.is_ok());
    // Sign-ins have their own allowance.
    assert!(unknown(&t, "frank", v4(1)).await.is_ok());
    clock.advance(SIGNUP_PERIOD);
    assert!(t.sign_up(v4(1)).await.is_ok());
    assert!(t.sign_up(v4(1)).await.is_err());
}

#[tokio::test]
async fn a_disabled_throttle_lets_everything_through() {
    let (_clock, t) = throttle();
    let t = t.disabled();
    let device = DeviceId::random();
    for _ in 0..ACCOUNT_BURST * 2 {
        assert_eq!(unknown(&t, "load", v4(1)).await, Ok(Via::Unknown));
        assert_eq!(
            attempt(&t, "load", v4(1), Some(device)).await,
            Ok(Via::Device(device))
        );
        assert!(t.sign_up(v4(1)).await.is_ok());
    }
}

#[tokio::test]
async fn memory_is_bounded_and_the_least_recent_record_goes_first() {
    let clock = FakeRelativeClock::default();
    let t = Throttle::with_clock(clock, 100);
    // An attacker hammers one pair, then floods the throttle with new names from many
    // addresses, and new device proofs; the hammered record, touched again and again,
    // survives the flood.
    for _ in 0..PAIR_BURST {
        unknown(&t, "victim", v4(1)).await.unwrap();
    }
    for i in 0..1000u32 {
        let addr = Some(IpAddr::V4(Ipv4Addr::from(0x0a01_0000 + i)));
        let _ = unknown(&t, &format!("name{i}"), addr).await;
        let _ = attempt(&t, "victim", addr, Some(DeviceId::random())).await;
        let _ = t.password_check(uuid::Uuid::new_v4()).await;
        if i % 50 == 0 {
            assert!(
                unknown(&t, "victim", v4(1)).await.is_err(),
                "forgotten at {i}"
            );
        }
    }
    for limit in Limit::ALL {
        assert!(t.tracked(limit) <= 100, "{limit:?}: {}", t.tracked(limit));
    }
    // The oldest of the flood are gone, the newest kept.
    let Counts::Memory(limiters) = &t.counts else {
        unreachable!()
    };
    let pairs = limiters[Limit::Pair.index()].store.lock();
    assert!(pairs.map.contains_key("name999 10.1.3.231"));
    assert!(!pairs.map.contains_key("name0 10.1.0.0"));
}

#[tokio::test]
async fn full_records_are_forgotten() {
    let (clock, t) = throttle();
    let device = Some(DeviceId::random());
    unknown(&t, "erin", v4(1)).await.unwrap();
    attempt(&t, "erin", v4(1), device).await.unwrap();
    t.password_check(uuid::Uuid::new_v4()).await.unwrap();
    t.sign_up(v4(1)).await.unwrap();
    t.mail_request(v4(1), "erin").await.unwrap();
    t.code(7).await.unwrap();
    t.ceremony(v4(1)).await.unwrap();
    for limit in Limit::ALL {
        assert_eq!(t.tracked(limit), 1, "{limit:?}");
    }
    let longest = Limit::ALL.iter().map(|l| l.period()).max().unwrap();
    clock.advance(longest * 2);
    t.forget_stale().await.unwrap();
    for limit in Limit::ALL {
        assert_eq!(t.tracked(limit), 0, "{limit:?}");
    }
    let Counts::Memory(limiters) = &t.counts else {
        unreachable!()
    };
    assert!(limiters.iter().all(|l| l.store.lock().order.is_empty()));
}

/// Reset links asked for: counted per client address, then per recipient (whatever the case
/// it is typed in), refused once either has none left.
#[tokio::test]
async fn mail_requests_are_limited_per_client_and_per_recipient() {
    let (_clock, t) = throttle();
    for _ in 0..crate::throttle::MAIL_TO_BURST {
        t.mail_request(v4(1), "Erin").await.unwrap();
    }
    assert!(matches!(
        t.mail_request(v4(2), "erin").await,
        Err(Throttled::TooMany { .. })
    ));
    for i in 0..crate::throttle::MAIL_FROM_BURST - crate::throttle::MAIL_TO_BURST {
        t.mail_request(v4(1), &format!("someone{i}")).await.unwrap();
    }
    assert!(matches!(
        t.mail_request(v4(1), "another").await,
        Err(Throttled::TooMany { .. })
    ));
    t.mail_request(v4(3), "another").await.unwrap();
}

#[test]
fn refreshes_are_limited_per_address_and_per_session() {
    let clock = FakeRelativeClock::default();
    let limits = RefreshLimits::with_clock(clock.clone(), MAX_KEYS);
    for _ in 0..REFRESH_ADDRESS_BURST {
        assert_eq!(limits.address(v4(1)), Ok(()));
    }
    assert_eq!(limits.address(v4(1)), Err(Refused { retry_after: 1 }));
    assert_eq!(
        limits.address(v4(2)),
        Ok(()),
        "another address is not touched"
    );
    clock.advance(REFRESH_ADDRESS_PERIOD);
    assert_eq!(limits.address(v4(1)), Ok(()));

    let (a, b) = (uuid::Uuid::new_v4(), uuid::Uuid::new_v4());
    for _ in 0..REFRESH_SESSION_BURST {
        assert_eq!(limits.session(&a), Ok(()));
    }
    assert_eq!(limits.session(&a), Err(Refused { retry_after: 1 }));
    assert_eq!(limits.session(&b), Ok(()), "another session is not touched");
    clock.advance(REFRESH_SESSION_PERIOD);
    assert_eq!(limits.session(&a), Ok(()));

    let off = RefreshLimits::with_clock(clock, MAX_KEYS).disabled();
    for _ in 0..1000 {
        assert_eq!(off.session(&a), Ok(()));
        assert_eq!(off.address(v4(1)), Ok(()));
    }
}
