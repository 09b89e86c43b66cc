//! Times in the reader's zone and the reader's language's way of writing them, identical on the
//! server's first paint and after hydration.
//!
//! The browser knows both (its `Intl.DateTimeFormat`); the server learns them from a cookie the
//! browser writes on its first visit (`clock`, by a few lines of script in every page,
//! [`CLOCK_SCRIPT`]): the IANA zone, and a pattern read off the browser's own formatting of a
//! known date (`%-d.%-m.%Y, %-H:%M` for German, `%-m/%-d/%Y, %-I:%M %p` with `AM`/`PM` for
//! American English). Until the cookie exists, times are shown in UTC and say so.
//!
//! The server names the clock it wrote the page with in the page itself (`<meta name="clock">`),
//! and the browser's code writes times with that clock for as long as the page lives: a new
//! cookie (a first visit, a journey to another zone) is used from the next page load on, never
//! swapped in under the reader's eyes. Both sides turn a time into its wall-clock fields in the
//! zone (the server with jiff's copy of the time-zone database, the browser with its own) and
//! write those fields through the same pattern with the same code, so hydration finds the text
//! it would have written: nothing changes on screen. None of this is in the WASM a first visit
//! downloads: only the pages that show times (lazy routes) carry it.
//!
//! The cookie is the reader's own input (anyone can write any value into their own cookie), so
//! it is parsed strictly and bounded; anything unexpected means UTC.

use leptos::prelude::*;

/// The cookie's name over plain http (development).
pub const COOKIE: &str = "clock";
/// Its name over https: `__Host-` makes browsers refuse it from anywhere but this host (a
/// sibling domain cannot plant one), and the page's script picks it by the page's protocol.
pub const SECURE_COOKIE: &str = "__Host-clock";

/// The cookie's name on a site whose cookies are `Secure` (`COOKIE_SECURE`) or not.
#[cfg(feature = "ssr")]
pub fn cookie_name(secure: bool) -> &'static str {
    if secure {
        SECURE_COOKIE
    } else {
        COOKIE
    }
}

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
    /// The clock of the page being rendered, from the request's cookie; a cookie the server
    /// cannot use (malformed, or naming a zone it does not know) is deleted in this answer.
    #[cfg(feature = "ssr")]
    fn of_this_request() -> Self {
        let secure =
            use_context::<crate::auth::AppState>().is_some_and(|state| state.auth.cookie.secure());
        let cookie = use_context::<http::request::Parts>()
            .and_then(|p| cookie_in(&p.headers, cookie_name(secure)));
        let clock = Self::from_cookie(cookie.as_deref());
        if cookie.is_some() && clock.local.is_none() {
            forget_cookie(secure);
        }
        clock
    }

    #[cfg(feature = "ssr")]
    fn from_cookie(value: Option<&str>) -> Self {
        let local = value
            .and_then(Local::parse)
            .filter(|l| jiff::tz::TimeZone::get(&l.zone).is_ok());
        Self { local }
    }

    /// What the page's `<meta name="clock">` says: the clock in the cookie's own form, or
    /// nothing for UTC.
    #[cfg(feature = "ssr")]
    fn meta(&self) -> String {
        self.local
            .as_ref()
            .map(Local::to_cookie)
            .unwrap_or_default()
    }

    /// The clock a request's cookie names, for work done before the page renders (a layer);
    /// the page itself ([`ClockMeta`]) reads the same cookie and deletes it when the server
    /// cannot use it.
    #[cfg(feature = "ssr")]
    pub fn of_request(headers: &http::HeaderMap, secure: bool) -> Self {
        Self::from_cookie(cookie_in(headers, cookie_name(secure)).as_deref())
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
        let period_ok = |p: &str| p.chars().count() <= MAX_PERIOD && p.chars().all(shown_as_is);
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
    #[cfg(any(feature = "ssr", test))]
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

/// A character the cookie may carry into a page's text: no control characters, and none of the
/// bidirectional embeddings, overrides and isolates that would reorder the text around it (the
/// marks LRM, RLM and ALM, which right-to-left languages' formats use, are fine).
fn shown_as_is(c: char) -> bool {
    !c.is_control() && !matches!(c, '\u{202A}'..='\u{202E}' | '\u{2066}'..='\u{2069}')
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
    if pattern.len() > MAX_PATTERN || !pattern.chars().all(shown_as_is) {
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

#[cfg(any(feature = "ssr", test))]
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
#[cfg(any(feature = "ssr", test))]
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
            let hex = bytes.get(i + 1..i + 3)?;
            if !hex.iter().all(u8::is_ascii_hexdigit) {
                return None;
            }
            out.push(u8::from_str_radix(std::str::from_utf8(hex).ok()?, 16).ok()?);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

/// The request's `clock` cookie. Two of them (one planted by a sibling domain, with a path of
/// its own) mean none: which is whose cannot be told.
#[cfg(feature = "ssr")]
fn cookie_in(headers: &http::HeaderMap, name: &str) -> Option<String> {
    let mut found = identity::cookie::values(headers, name);
    let first = found.next()?.to_owned();
    found.next().is_none().then_some(first)
}

#[cfg(feature = "ssr")]
fn forget_cookie(secure: bool) {
    if let Some(res) = use_context::<leptos_axum::ResponseOptions>() {
        res.append_header(
            http::header::SET_COOKIE,
            http::HeaderValue::from_static(if secure {
                "__Host-clock=; Path=/; Max-Age=0; Secure; SameSite=Lax"
            } else {
                "clock=; Path=/; Max-Age=0; SameSite=Lax"
            }),
        );
    }
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

/// The page's clock: on the server, the one [`provide_page_clock`] provided for this request;
/// in the browser, the one the server named in the page.
pub fn use_clock() -> Clock {
    #[cfg(feature = "ssr")]
    {
        use_context::<Clock>().unwrap_or_default()
    }
    #[cfg(all(feature = "hydrate", not(feature = "ssr")))]
    {
        browser::page_clock()
    }
    #[cfg(not(any(feature = "ssr", feature = "hydrate")))]
    {
        Clock::default()
    }
}

/// Provides the clock of the page being rendered to every view under the caller (the shell,
/// so that the whole document sees it), and returns what [`ClockMeta`] writes for the browser.
#[cfg(feature = "ssr")]
pub fn provide_page_clock() -> String {
    let clock = Clock::of_this_request();
    let meta = clock.meta();
    provide_context(clock);
    meta
}

/// In the document's head: the clock this page is written with (`<meta name="clock">`, read by
/// the browser's code; `meta` from [`provide_page_clock`]), and the script that keeps the
/// `clock` cookie up to date for the next page. Server-rendered only (the shell is never
/// hydrated).
#[component]
pub fn ClockMeta(meta: String) -> impl IntoView {
    let nonce = leptos::nonce::use_nonce();
    view! {
        <meta name="clock" content=meta/>
        <script nonce=nonce inner_html=CLOCK_SCRIPT></script>
    }
}

/// Writes the `clock` cookie when it is missing or differs from what this browser would write:
/// the zone, and the pattern read off `Intl`'s formatting of 2001-02-03 04:05 and 16:05 local
/// time (every field one digit where it can be, so a leading zero shows where the language
/// pads), numbers in Latin digits, the Gregorian calendar; the hour's clock from the resolved
/// `hourCycle`, or, where an engine does not say it, 1–12 when the time has a day period. A
/// browser that cannot do it (no `Intl`, a part we do not know) writes nothing: its times stay
/// in UTC.
pub const CLOCK_SCRIPT: &str = r#"(()=>{try{
const f=new Intl.DateTimeFormat(undefined,{year:"numeric",month:"numeric",day:"numeric",hour:"numeric",minute:"2-digit",numberingSystem:"latn",calendar:"gregory"});
const o=f.resolvedOptions(),at=n=>f.formatToParts(new Date(2001,1,3,n,5)),am=at(4),pm=at(16);
const h={h12:"I",h11:"K",h24:"k",h23:"H"}[o.hourCycle]||(o.hour12||am.some(p=>p.type==="dayPeriod")?"I":"H");
const clean=t=>t.replace(/[|]/g," ");
const period=ps=>clean((ps.find(p=>p.type==="dayPeriod")||{value:""}).value);
const spec={year:"%Y",month:"%m",day:"%d",hour:"%"+h,minute:"%M",dayPeriod:"%p"};
let pattern="";
for(const p of am){
if(p.type==="literal"){pattern+=clean(p.value).replace(/%/g,"%%");continue;}
const s=spec[p.type];if(!s)return;
pattern+=("mdHIKk".includes(s[1])&&!p.value.startsWith("0"))?"%-"+s[1]:s;}
const v=encodeURIComponent(["1",o.timeZone,pattern,period(am),period(pm)].join("|"));
const tls=location.protocol==="https:",n=(tls?"__Host-clock=":"clock=")+v;
if(document.cookie.split("; ").includes(n))return;
document.cookie=n+"; Path=/; Max-Age=31536000; SameSite=Lax"+(tls?"; Secure":"");
}catch(e){}})();"#;

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

/// The browser's side: the page's clock, and `Intl.DateTimeFormat` for the zone's wall-clock
/// fields, reached through `Reflect` so that a value it refuses (a zone it does not know) is an
/// `Err`, never an exception thrown through the WASM.
#[cfg(all(feature = "hydrate", not(feature = "ssr")))]
mod browser {
    use super::{Clock, Fields, Local};
    use js_sys::{Array, Function, Object, Reflect};
    use std::cell::RefCell;
    use wasm_bindgen::{JsCast, JsValue};

    fn get(target: &JsValue, key: &str) -> Option<JsValue> {
        Reflect::get(target, &JsValue::from_str(key)).ok()
    }

    fn call(target: &JsValue, method: &str, arg: &JsValue) -> Option<JsValue> {
        let f: Function = get(target, method)?.dyn_into().ok()?;
        f.call1(target, arg).ok()
    }

    fn read_page_clock() -> Option<Local> {
        let document = get(&js_sys::global(), "document")?;
        let meta = call(
            &document,
            "querySelector",
            &JsValue::from_str("meta[name=clock]"),
        )?;
        Local::parse(&get(&meta, "content")?.as_string()?)
    }

    thread_local! {
        /// The clock the server named in this page, read once.
        static PAGE: Clock = Clock { local: read_page_clock() };
        /// The last zone's formatter: making one costs far more than using it.
        static ZONE: RefCell<Option<(String, JsValue)>> = const { RefCell::new(None) };
    }

    pub(super) fn page_clock() -> Clock {
        PAGE.with(Clock::clone)
    }

    /// A formatter of the wall-clock fields in `zone`: numbers in Latin digits, 0–23 hours.
    fn zone_format(zone: &str) -> Option<JsValue> {
        let intl = get(&js_sys::global(), "Intl")?;
        let constructor: Function = get(&intl, "DateTimeFormat")?.dyn_into().ok()?;
        let options = Object::new();
        for (key, value) in [
            ("timeZone", zone),
            ("hourCycle", "h23"),
            ("year", "numeric"),
            ("month", "numeric"),
            ("day", "numeric"),
            ("hour", "numeric"),
            ("minute", "numeric"),
            ("numberingSystem", "latn"),
            ("calendar", "gregory"),
        ] {
            Reflect::set(&options, &JsValue::from_str(key), &JsValue::from_str(value)).ok()?;
        }
        let locales = Array::of1(&JsValue::from_str("en-US"));
        Reflect::construct(&constructor, &Array::of2(&locales, &options)).ok()
    }

    pub(super) fn zone_fields(zone: &str, unix: i64) -> Option<Fields> {
        let format = ZONE.with_borrow_mut(|cached| match cached {
            Some((z, f)) if z == zone => Some(f.clone()),
            _ => {
                let f = zone_format(zone)?;
                *cached = Some((zone.to_owned(), f.clone()));
                Some(f)
            }
        })?;
        let date = js_sys::Date::new(&JsValue::from_f64(unix as f64 * 1000.0));
        let parts: Array = call(&format, "formatToParts", &date)?.dyn_into().ok()?;
        let number = |kind: &str| -> Option<u32> {
            parts.iter().find_map(|p| {
                if get(&p, "type")?.as_string()? == kind {
                    get(&p, "value")?.as_string()?.parse().ok()
                } else {
                    None
                }
            })
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
            "1%7CUTC%7C%+F".into(),
            encode("1|UTC|%Y-%m-%d %H:%M|\u{202E}AM|PM"),
            encode("1|UTC|%Y-%m-%d\u{2066} %H:%M||"),
        ] {
            assert_eq!(Local::parse(&bad), None, "{bad}");
        }
    }

    #[cfg(feature = "ssr")]
    #[test]
    fn two_clock_cookies_mean_none() {
        let headers = |values: &[&str]| {
            let mut h = http::HeaderMap::new();
            for v in values {
                h.append(
                    http::header::COOKIE,
                    http::HeaderValue::from_str(v).unwrap(),
                );
            }
            h
        };
        let ok = percent_encode("1|Europe/Berlin|%-d.%-m.%Y, %-H:%M||");
        let plain = |values: &[&str]| cookie_in(&headers(values), cookie_name(false));
        assert_eq!(plain(&[&format!("a=1; clock={ok}")]), Some(ok.clone()));
        assert_eq!(plain(&[&format!("clock={ok}; clock=x")]), None);
        assert_eq!(plain(&[&format!("clock={ok}"), "clock=x"]), None);
        assert_eq!(plain(&["a=1"]), None);
        assert_eq!(
            plain(&[&format!("clockwork=1; clock={ok}")]),
            Some(ok.clone())
        );
        // Another cookie of the domain holding text beyond ASCII does not hide it.
        let mut h = headers(&[]);
        h.append(
            http::header::COOKIE,
            http::HeaderValue::from_bytes(format!("note=grüße; clock={ok}").as_bytes()).unwrap(),
        );
        assert_eq!(cookie_in(&h, cookie_name(false)), Some(ok.clone()));
        // Over https only the __Host- cookie counts: a plain one may come from anywhere.
        let secure = |values: &[&str]| cookie_in(&headers(values), cookie_name(true));
        assert_eq!(secure(&[&format!("clock={ok}")]), None);
        assert_eq!(
            secure(&[&format!("clock=x; __Host-clock={ok}")]),
            Some(ok.clone())
        );
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
