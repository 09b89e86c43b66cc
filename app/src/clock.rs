//! Times in the reader's zone and the reader's language's way of writing them, identical on the
//! server's first paint and after hydration.
//!
//! The browser knows both (its `Intl.DateTimeFormat`); the server learns them from a cookie the
//! browser writes after its first visit (`clock`): the IANA zone, and a pattern read off the
//! browser's own formatting of a known date (`%-d.%-m.%Y, %H:%M` for German, `%-m/%-d/%Y,
//! %-I:%M %p` with `AM`/`PM` for American English). Until the cookie exists, times are shown in
//! UTC and say so. Both sides turn a time into its wall-clock fields in the zone (the server with
//! jiff's copy of the time-zone database, the browser with its own) and write those fields
//! through the same pattern with the same code, so hydration finds the text it would have
//! written: nothing changes on screen. A new cookie (a first visit, a journey to another zone)
//! is read from the next page load on, never swapped in under the reader's eyes.
//!
//! The cookie is the reader's own input (anyone can write any value into their own cookie), so
//! it is parsed strictly and bounded; anything unexpected means UTC.

use leptos::prelude::*;

/// The cookie's name.
pub const COOKIE: &str = "clock";

/// How this page writes times: in UTC with a label, or in the reader's zone and pattern.
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub struct Clock {
    local: Option<Local>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
struct Local {
    zone: String,
    pattern: Vec<Piece>,
    am: String,
    pm: String,
}

/// A piece of a pattern: a field of the date and time, or text written as it is.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Piece {
    Year,
    Month {
        pad: bool,
    },
    Day {
        pad: bool,
    },
    /// The hour on one of the four clocks `Intl` knows: 0–23, 1–12, 0–11, 1–24.
    Hour {
        cycle: Cycle,
        pad: bool,
    },
    Minute,
    DayPeriod,
    Text(String),
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Cycle {
    H23,
    H12,
    H11,
    H24,
}

/// A time's wall-clock fields in some zone.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Fields {
    year: i64,
    month: u32,
    day: u32,
    hour: u32,
    minute: u32,
}

/// Bounds on the cookie's parts: the longest IANA zone name is 32 characters.
const MAX_ZONE: usize = 64;
const MAX_PATTERN: usize = 64;
const MAX_PERIOD: usize = 16;
/// The cookie's layout version: a browser with an old cookie writes a new one.
const VERSION: &str = "1";

impl Clock {
    /// The clock of this page: on the server, from the request's cookie (a cookie naming a
    /// zone the server does not know counts as none); in the browser, from the same cookie,
    /// which the server saw. Provided once by the app, read by [`use_clock`].
    pub fn of_this_page() -> Self {
        let cookie = cookie_value();
        let local = cookie.as_deref().and_then(Local::parse);
        #[cfg(feature = "ssr")]
        let local = {
            let local = local.filter(|l| jiff::tz::TimeZone::get(&l.zone).is_ok());
            // A cookie the server cannot use goes, in this very answer: the browser then
            // hydrates without it too, and writes the same times the server did.
            if cookie.is_some() && local.is_none() {
                forget_cookie();
            }
            local
        };
        Self { local }
    }

    /// `unix` written for the reader: `"3.12.2026, 01:08"`, or `"2026-12-03 00:08 UTC"`.
    pub fn format(&self, unix: i64) -> String {
        self.local
            .as_ref()
            .and_then(|local| Some(local.write(zone_fields(&local.zone, unix)?)))
            .unwrap_or_else(|| utc(unix))
    }

    /// The zone the times are written in, for a tooltip.
    pub fn zone(&self) -> &str {
        self.local.as_ref().map_or("UTC", |l| &l.zone)
    }
}

impl Local {
    /// `1|<zone>|<pattern>|<am>|<pm>`, percent-encoded as a whole.
    fn parse(cookie: &str) -> Option<Self> {
        if cookie.len() > 3 * (MAX_ZONE + MAX_PATTERN + 2 * MAX_PERIOD + 8) {
            return None;
        }
        let decoded = percent_decode(cookie)?;
        let mut parts = decoded.split('|');
        let (version, zone, pattern, am, pm) = (
            parts.next()?,
            parts.next()?,
            parts.next()?,
            parts.next()?,
            parts.next()?,
        );
        if version != VERSION || parts.next().is_some() {
            return None;
        }
        let zone_ok = !zone.is_empty()
            && zone.len() <= MAX_ZONE
            && zone
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"/_+-".contains(&b));
        let period_ok =
            |p: &str| p.chars().count() <= MAX_PERIOD && !p.chars().any(char::is_control);
        if !zone_ok || !period_ok(am) || !period_ok(pm) {
            return None;
        }
        Some(Self {
            zone: zone.to_owned(),
            pattern: parse_pattern(pattern)?,
            am: am.to_owned(),
            pm: pm.to_owned(),
        })
    }

    /// The cookie's value for this clock (see [`Local::parse`]).
    #[cfg(any(feature = "hydrate", test))]
    fn to_cookie(&self) -> String {
        let raw = format!(
            "{VERSION}|{}|{}|{}|{}",
            self.zone,
            write_pattern(&self.pattern),
            self.am,
            self.pm
        );
        percent_encode(&raw)
    }

    fn write(&self, f: Fields) -> String {
        let mut out = String::new();
        for piece in &self.pattern {
            match piece {
                Piece::Year => out.push_str(&f.year.to_string()),
                Piece::Month { pad } => push_number(&mut out, f.month, *pad),
                Piece::Day { pad } => push_number(&mut out, f.day, *pad),
                Piece::Hour { cycle, pad } => {
                    let hour = match cycle {
                        Cycle::H23 => f.hour,
                        Cycle::H12 => (f.hour + 11) % 12 + 1,
                        Cycle::H11 => f.hour % 12,
                        Cycle::H24 => {
                            if f.hour == 0 {
                                24
                            } else {
                                f.hour
                            }
                        }
                    };
                    push_number(&mut out, hour, *pad);
                }
                Piece::Minute => push_number(&mut out, f.minute, true),
                Piece::DayPeriod => out.push_str(if f.hour < 12 { &self.am } else { &self.pm }),
                Piece::Text(text) => out.push_str(text),
            }
        }
        out
    }
}

fn push_number(out: &mut String, n: u32, pad: bool) {
    if pad && n < 10 {
        out.push('0');
    }
    out.push_str(&n.to_string());
}

/// `%Y` year, `%m`/`%-m` month, `%d`/`%-d` day, `%H` (0–23), `%I` (1–12), `%K` (0–11), `%k`
/// (1–24) hours, each with `-` for no leading zero, `%M` minute, `%p` day period, `%%` a `%`;
/// any other text as it is. A pattern must name the year, month, day, hour and minute.
fn parse_pattern(pattern: &str) -> Option<Vec<Piece>> {
    if pattern.len() > MAX_PATTERN || pattern.chars().any(char::is_control) {
        return None;
    }
    let mut pieces = Vec::new();
    let mut text = String::new();
    let mut chars = pattern.chars();
    while let Some(c) = chars.next() {
        if c != '%' {
            text.push(c);
            continue;
        }
        let mut spec = chars.next()?;
        let pad = spec != '-';
        if !pad {
            spec = chars.next()?;
        }
        let piece = match (spec, pad) {
            ('%', true) => {
                text.push('%');
                continue;
            }
            ('Y', true) => Piece::Year,
            ('m', _) => Piece::Month { pad },
            ('d', _) => Piece::Day { pad },
            ('H', _) => Piece::Hour {
                cycle: Cycle::H23,
                pad,
            },
            ('I', _) => Piece::Hour {
                cycle: Cycle::H12,
                pad,
            },
            ('K', _) => Piece::Hour {
                cycle: Cycle::H11,
                pad,
            },
            ('k', _) => Piece::Hour {
                cycle: Cycle::H24,
                pad,
            },
            ('M', true) => Piece::Minute,
            ('p', true) => Piece::DayPeriod,
            _ => return None,
        };
        if !text.is_empty() {
            pieces.push(Piece::Text(std::mem::take(&mut text)));
        }
        pieces.push(piece);
    }
    if !text.is_empty() {
        pieces.push(Piece::Text(text));
    }
    let has = |want: fn(&Piece) -> bool| pieces.iter().filter(|p| want(p)).count() == 1;
    let complete = has(|p| matches!(p, Piece::Year))
        && has(|p| matches!(p, Piece::Month { .. }))
        && has(|p| matches!(p, Piece::Day { .. }))
        && has(|p| matches!(p, Piece::Hour { .. }))
        && has(|p| matches!(p, Piece::Minute));
    complete.then_some(pieces)
}

#[cfg(any(feature = "hydrate", test))]
fn write_pattern(pieces: &[Piece]) -> String {
    let mut out = String::new();
    for piece in pieces {
        let spec = |out: &mut String, pad: bool, c: char| {
            out.push('%');
            if !pad {
                out.push('-');
            }
            out.push(c);
        };
        match piece {
            Piece::Year => out.push_str("%Y"),
            Piece::Month { pad } => spec(&mut out, *pad, 'm'),
            Piece::Day { pad } => spec(&mut out, *pad, 'd'),
            Piece::Hour { cycle, pad } => spec(
                &mut out,
                *pad,
                match cycle {
                    Cycle::H23 => 'H',
                    Cycle::H12 => 'I',
                    Cycle::H11 => 'K',
                    Cycle::H24 => 'k',
                },
            ),
            Piece::Minute => out.push_str("%M"),
            Piece::DayPeriod => out.push_str("%p"),
            Piece::Text(text) => out.push_str(&text.replace('%', "%%")),
        }
    }
    out
}

/// Percent-encoding of everything but unreserved characters (what `encodeURIComponent` leaves
/// alone, less `!'()*`): safe in a cookie value.
#[cfg(any(feature = "hydrate", test))]
fn percent_encode(raw: &str) -> String {
    use std::fmt::Write;
    let mut out = String::with_capacity(raw.len());
    for b in raw.bytes() {
        if b.is_ascii_alphanumeric() || b"-_.~".contains(&b) {
            out.push(char::from(b));
        } else {
            let _ = write!(out, "%{b:02X}");
        }
    }
    out
}

/// The inverse of [`percent_encode`]; `None` for a bad escape or bytes that are not UTF-8.
fn percent_decode(encoded: &str) -> Option<String> {
    let bytes = encoded.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = std::str::from_utf8(bytes.get(i + 1..i + 3)?).ok()?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

/// The `clock` cookie of this request (server) or this document (browser).
fn cookie_value() -> Option<String> {
    #[cfg(feature = "ssr")]
    {
        let parts = use_context::<http::request::Parts>()?;
        let found = parts
            .headers
            .get_all(http::header::COOKIE)
            .iter()
            .filter_map(|h| h.to_str().ok())
            .find_map(|h| find_cookie(h, COOKIE).map(str::to_owned));
        found
    }
    #[cfg(all(feature = "hydrate", not(feature = "ssr")))]
    {
        browser::document_cookie()
            .as_deref()
            .and_then(|all| find_cookie(all, COOKIE).map(str::to_owned))
    }
    #[cfg(not(any(feature = "ssr", feature = "hydrate")))]
    {
        None
    }
}

#[cfg(feature = "ssr")]
fn forget_cookie() {
    if let Some(res) = use_context::<leptos_axum::ResponseOptions>() {
        res.append_header(
            http::header::SET_COOKIE,
            http::HeaderValue::from_static("clock=; Path=/; Max-Age=0; SameSite=Lax"),
        );
    }
}

fn find_cookie<'a>(header: &'a str, name: &str) -> Option<&'a str> {
    header.split(';').find_map(|pair| {
        let (key, value) = pair.trim().split_once('=')?;
        (key == name).then_some(value)
    })
}

/// The wall-clock fields of `unix` in `zone`.
fn zone_fields(zone: &str, unix: i64) -> Option<Fields> {
    #[cfg(feature = "ssr")]
    {
        let tz = jiff::tz::TimeZone::get(zone).ok()?;
        let at = jiff::Timestamp::from_second(unix).ok()?.to_zoned(tz);
        Some(Fields {
            year: i64::from(at.year()),
            month: u32::try_from(at.month()).ok()?,
            day: u32::try_from(at.day()).ok()?,
            hour: u32::try_from(at.hour()).ok()?,
            minute: u32::try_from(at.minute()).ok()?,
        })
    }
    #[cfg(all(feature = "hydrate", not(feature = "ssr")))]
    {
        browser::zone_fields(zone, unix)
    }
    #[cfg(not(any(feature = "ssr", feature = "hydrate")))]
    {
        let _ = (zone, unix);
        None
    }
}

/// The page's clock (UTC when the app provided none).
pub fn use_clock() -> Clock {
    use_context::<Clock>().unwrap_or_default()
}

/// Provides the page's clock; in the browser, once the page is hydrated, writes the cookie that
/// tells the server the reader's zone and pattern (when it is missing or out of date).
pub fn provide_clock() {
    provide_context(Clock::of_this_page());
    #[cfg(all(feature = "hydrate", not(feature = "ssr")))]
    Effect::new(|_| browser::remember());
}

/// A time for the reader: `<time datetime="2026-12-03T00:08:00Z">3.12.2026, 01:08</time>`.
#[component]
pub fn LocalTime(
    /// Unix seconds.
    at: i64,
) -> impl IntoView {
    let clock = use_clock();
    view! {
        <time datetime=iso(at) title=clock.zone().to_owned()>
            {clock.format(at)}
        </time>
    }
}

/// `1700000000` → `"2023-11-14 22:13 UTC"`.
pub fn utc(unix: i64) -> String {
    let (y, m, d, hh, mm) = utc_fields(unix);
    format!("{y:04}-{m:02}-{d:02} {hh:02}:{mm:02} UTC")
}

/// `1700000000` → `"2023-11-14T22:13:20Z"` (a `<time>` element's `datetime`).
pub fn iso(unix: i64) -> String {
    let (y, m, d, hh, mm) = utc_fields(unix);
    let ss = unix.rem_euclid(60);
    format!("{y:04}-{m:02}-{d:02}T{hh:02}:{mm:02}:{ss:02}Z")
}

fn utc_fields(unix: i64) -> (i64, u32, u32, i64, i64) {
    let days = unix.div_euclid(86_400);
    let secs = unix.rem_euclid(86_400);
    let (y, m, d) = civil_from_days(days);
    (y, m, d, secs / 3600, (secs % 3600) / 60)
}

/// Days since 1970-01-01 → (year, month, day), proleptic Gregorian (H. Hinnant's algorithm).
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (if m <= 2 { y + 1 } else { y }, m, d)
}

/// The browser's side: `Intl.DateTimeFormat`, reached through `Reflect` so that a value it
/// refuses (a zone it does not know) is an `Err`, never an exception thrown through the WASM.
#[cfg(all(feature = "hydrate", not(feature = "ssr")))]
mod browser {
    use super::{Cycle, Fields, Local, Piece, COOKIE};
    use js_sys::{Array, Function, Object, Reflect};
    use std::cell::RefCell;
    use wasm_bindgen::{JsCast, JsValue};

    fn get(target: &JsValue, key: &str) -> Option<JsValue> {
        Reflect::get(target, &JsValue::from_str(key)).ok()
    }

    fn document() -> Option<JsValue> {
        get(&js_sys::global(), "document")
    }

    pub(super) fn document_cookie() -> Option<String> {
        get(&document()?, "cookie")?.as_string()
    }

    /// `new Intl.DateTimeFormat(locale, options)`, or `None` where the browser refuses it.
    fn date_format(locale: Option<&str>, options: &[(&str, &str)]) -> Option<JsValue> {
        let intl = get(&js_sys::global(), "Intl")?;
        let constructor: Function = get(&intl, "DateTimeFormat")?.dyn_into().ok()?;
        let opts = Object::new();
        for (key, value) in options {
            Reflect::set(&opts, &JsValue::from_str(key), &JsValue::from_str(value)).ok()?;
        }
        let locales = match locale {
            Some(l) => Array::of1(&JsValue::from_str(l)).into(),
            None => JsValue::UNDEFINED,
        };
        Reflect::construct(&constructor, &Array::of2(&locales, &opts)).ok()
    }

    /// `format.formatToParts(new Date(ms))` as (type, value) pairs.
    fn parts(format: &JsValue, ms: f64) -> Option<Vec<(String, String)>> {
        let to_parts: Function = get(format, "formatToParts")?.dyn_into().ok()?;
        let date = js_sys::Date::new(&JsValue::from_f64(ms));
        let parts: Array = to_parts.call1(format, &date).ok()?.dyn_into().ok()?;
        parts
            .iter()
            .map(|p| {
                Some((
                    get(&p, "type")?.as_string()?,
                    get(&p, "value")?.as_string()?,
                ))
            })
            .collect()
    }

    /// The fields every format here asks for: numbers in Latin digits, the Gregorian calendar.
    const NUMERIC: [(&str, &str); 7] = [
        ("year", "numeric"),
        ("month", "numeric"),
        ("day", "numeric"),
        ("hour", "numeric"),
        ("minute", "2-digit"),
        ("numberingSystem", "latn"),
        ("calendar", "gregory"),
    ];

    thread_local! {
        /// The last zone's formatter: making one costs far more than using it.
        static ZONE: RefCell<Option<(String, JsValue)>> = const { RefCell::new(None) };
    }

    pub(super) fn zone_fields(zone: &str, unix: i64) -> Option<Fields> {
        let format = ZONE.with_borrow_mut(|cached| {
            if let Some((z, f)) = cached.as_ref().filter(|(z, _)| z == zone) {
                let _ = z;
                return Some(f.clone());
            }
            let mut options = NUMERIC.to_vec();
            options.extend([("timeZone", zone), ("hourCycle", "h23")]);
            let f = date_format(Some("en-US"), &options)?;
            *cached = Some((zone.to_owned(), f.clone()));
            Some(f)
        })?;
        let parts = parts(&format, unix as f64 * 1000.0)?;
        let number = |kind: &str| -> Option<u32> {
            parts
                .iter()
                .find(|(t, _)| t == kind)
                .and_then(|(_, v)| v.parse().ok())
        };
        Some(Fields {
            year: i64::from(number("year")?),
            month: number("month")?,
            day: number("day")?,
            // Some engines write midnight as 24 even when asked for 0–23.
            hour: number("hour")? % 24,
            minute: number("minute")?,
        })
    }

    /// The reader's zone and pattern, read off the browser's own formatting of
    /// 2001-02-03 04:05 and 16:05 local time (every field one digit where it can be, so a
    /// leading zero shows where the language pads).
    fn reader() -> Option<Local> {
        let format = date_format(None, &NUMERIC)?;
        let resolved = Reflect::apply(
            &get(&format, "resolvedOptions")?
                .dyn_into::<Function>()
                .ok()?,
            &format,
            &Array::new(),
        )
        .ok()?;
        let zone = get(&resolved, "timeZone")?.as_string()?;
        let cycle = match get(&resolved, "hourCycle")
            .and_then(|c| c.as_string())
            .as_deref()
        {
            Some("h12") => Cycle::H12,
            Some("h11") => Cycle::H11,
            Some("h24") => Cycle::H24,
            _ => Cycle::H23,
        };
        let local_ms = |hour: u32| {
            js_sys::Date::new_with_year_month_day_hr_min(2001, 1, 3, hour as i32, 5).get_time()
        };
        let morning = parts(&format, local_ms(4))?;
        let afternoon = parts(&format, local_ms(16))?;
        let period = |parts: &[(String, String)]| {
            parts
                .iter()
                .find(|(t, _)| t == "dayPeriod")
                .map(|(_, v)| v.clone())
                .unwrap_or_default()
        };
        let mut pattern = Vec::new();
        for (kind, value) in &morning {
            let pad = value.starts_with('0');
            pattern.push(match kind.as_str() {
                "year" => Piece::Year,
                "month" => Piece::Month { pad },
                "day" => Piece::Day { pad },
                "hour" => Piece::Hour { cycle, pad },
                "minute" => Piece::Minute,
                "dayPeriod" => Piece::DayPeriod,
                "literal" => Piece::Text(value.replace('|', " ")),
                _ => return None,
            });
        }
        let local = Local {
            zone,
            pattern,
            am: period(&morning).replace('|', " "),
            pm: period(&afternoon).replace('|', " "),
        };
        // Only what the server will accept back.
        Local::parse(&local.to_cookie()).filter(|parsed| *parsed == local)
    }

    /// Writes the cookie when it is missing or says something else than this browser would.
    pub(super) fn remember() {
        let Some(local) = reader() else { return };
        let value = local.to_cookie();
        let current = document_cookie();
        if current
            .as_deref()
            .and_then(|all| super::find_cookie(all, COOKIE))
            == Some(value.as_str())
        {
            return;
        }
        let secure = get(&js_sys::global(), "location")
            .and_then(|l| get(&l, "protocol"))
            .and_then(|p| p.as_string())
            .is_some_and(|p| p == "https:");
        let cookie = format!(
            "{COOKIE}={value}; Path=/; Max-Age=31536000; SameSite=Lax{}",
            if secure { "; Secure" } else { "" }
        );
        if let Some(document) = document() {
            let _ = Reflect::set(
                &document,
                &JsValue::from_str("cookie"),
                &JsValue::from_str(&cookie),
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn local(zone: &str, pattern: &str, am: &str, pm: &str) -> Local {
        Local {
            zone: zone.into(),
            pattern: parse_pattern(pattern).unwrap(),
            am: am.into(),
            pm: pm.into(),
        }
    }

    #[test]
    fn known_dates_in_utc() {
        assert_eq!(utc(0), "1970-01-01 00:00 UTC");
        assert_eq!(utc(1_700_000_000), "2023-11-14 22:13 UTC");
        assert_eq!(utc(951_782_400), "2000-02-29 00:00 UTC");
        assert_eq!(utc(-86_400), "1969-12-31 00:00 UTC");
        assert_eq!(iso(1_700_000_000), "2023-11-14T22:13:20Z");
        assert_eq!(
            Clock::default().format(1_700_000_000),
            "2023-11-14 22:13 UTC"
        );
    }

    #[test]
    fn patterns_write_the_fields_as_the_language_does() {
        let f = Fields {
            year: 2026,
            month: 2,
            day: 3,
            hour: 0,
            minute: 8,
        };
        let pm = Fields { hour: 13, ..f };
        let us = local("America/New_York", "%-m/%-d/%Y, %-I:%M %p", "AM", "PM");
        assert_eq!(us.write(f), "2/3/2026, 12:08 AM");
        assert_eq!(us.write(pm), "2/3/2026, 1:08 PM");
        let de = local("Europe/Berlin", "%-d.%-m.%Y, %H:%M", "", "");
        assert_eq!(de.write(f), "3.2.2026, 00:08");
        let gb = local("Europe/London", "%d/%m/%Y, %H:%M", "", "");
        assert_eq!(gb.write(pm), "03/02/2026, 13:08");
        let ja = local("Asia/Tokyo", "%Y/%-m/%-d %p%-K:%M", "午前", "午後");
        assert_eq!(ja.write(f), "2026/2/3 午前0:08");
        assert_eq!(ja.write(pm), "2026/2/3 午後1:08");
        let h24 = local("UTC", "%Y-%m-%d %k:%M", "", "");
        assert_eq!(h24.write(f), "2026-02-03 24:08");
        let percent = local("UTC", "%Y%%%m%%%d %H:%M", "", "");
        assert_eq!(percent.write(f), "2026%02%03 00:08");
    }

    #[test]
    fn the_cookie_round_trips_and_anything_odd_is_refused() {
        let ja = local("Asia/Tokyo", "%Y/%-m/%-d %p%-K:%M", "午前", "午後");
        let cookie = ja.to_cookie();
        assert!(
            cookie
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"%-_.~".contains(&b)),
            "{cookie}"
        );
        assert_eq!(Local::parse(&cookie), Some(ja));
        let with_percent = local("UTC", "%Y%%%m %d %H:%M", "", "");
        assert_eq!(Local::parse(&with_percent.to_cookie()), Some(with_percent));

        let encode = |raw: &str| percent_encode(raw);
        for bad in [
            String::new(),
            "garbage".into(),
            encode("2|UTC|%Y-%m-%d %H:%M||"),
            encode("1|UTC|%Y-%m-%d %H:%M|"),
            encode("1|UTC|%Y-%m-%d %H:%M|||"),
            encode("1||%Y-%m-%d %H:%M||"),
            encode("1|Europe/Berlin;x|%Y-%m-%d %H:%M||"),
            encode("1|../../etc/passwd|%Y-%m-%d %H:%M||"),
            encode("1|UTC|%Y-%m-%d||"),
            encode("1|UTC|%Y-%m-%d %H:%M %M||"),
            encode("1|UTC|%Y-%m-%d %H:%Q||"),
            encode("1|UTC|%Y-%m-%d %H:%M%||"),
            encode("1|UTC|%Y-%m-%d %H:%M\n||"),
            encode(&format!("1|UTC|%Y-%m-%d %H:%M{}||", "x".repeat(80))),
            encode(&format!("1|UTC|%Y-%m-%d %H:%M|{}|", "a".repeat(17))),
            encode(&format!("1|{}|%Y-%m-%d %H:%M||", "A".repeat(65))),
            "1%7CUTC%7C%ZZ".into(),
            "1%7CUTC%7C%FF%FE%7C%7C".into(),
            "%".into(),
        ] {
            assert_eq!(Local::parse(&bad), None, "{bad}");
        }
    }

    #[test]
    fn the_cookie_is_found_among_others() {
        assert_eq!(find_cookie("a=1; clock=xyz; b=2", COOKIE), Some("xyz"));
        assert_eq!(find_cookie("clockwork=1; clock=", COOKIE), Some(""));
        assert_eq!(find_cookie("a=1", COOKIE), None);
    }

    #[cfg(feature = "ssr")]
    #[test]
    fn the_server_writes_times_in_the_zone_with_its_rules() {
        let clock = |zone: &str, pattern: &str| Clock {
            local: Some(local(zone, pattern, "AM", "PM")),
        };
        let berlin = clock("Europe/Berlin", "%-d.%-m.%Y, %H:%M");
        // 2026-12-03 00:08 UTC: winter time, UTC+1.
        assert_eq!(berlin.format(1_796_256_480), "3.12.2026, 01:08");
        // 2026-07-01 12:00 UTC: summer time, UTC+2.
        assert_eq!(berlin.format(1_782_907_200), "1.7.2026, 14:00");
        let new_york = clock("America/New_York", "%-m/%-d/%Y, %-I:%M %p");
        assert_eq!(new_york.format(1_782_907_200), "7/1/2026, 8:00 AM");
        let kolkata = clock("Asia/Kolkata", "%Y-%m-%d %H:%M");
        assert_eq!(kolkata.format(1_700_000_000), "2023-11-15 03:43");
        // A zone the database does not know: UTC, labelled.
        let nowhere = clock("Mars/Olympus_Mons", "%Y-%m-%d %H:%M");
        assert_eq!(nowhere.format(1_700_000_000), "2023-11-14 22:13 UTC");
    }
}
