//! `[[time_interval]]`: named recurring times (times of day, weekdays, days of the month,
//! months, years, in a time zone) with Alertmanager's `time_intervals` semantics. Routes
//! use them as `mute_time_intervals` / `active_time_intervals`, `[[recurring_silence]]`
//! as the times it holds notifications back.

use jiff::tz::TimeZone;
use jiff::Timestamp;

/// A named interval: the time is in it when it is in any of its periods.
#[derive(Debug, Clone)]
pub struct TimeInterval {
    /// The name routes and recurring silences refer to.
    pub name: String,
    /// One per `[[time_interval]]` entry of that name.
    pub periods: Vec<Period>,
}

impl TimeInterval {
    /// Whether Unix time `now` falls in the interval.
    pub fn contains(&self, now: f64) -> bool {
        self.periods.iter().any(|p| p.contains(now))
    }
}

/// The first whole minute after `now` at which the time enters (`active = true`) or leaves
/// (`false`) the union of `intervals`, looking up to four years ahead; `None` if it never
/// does in that time. A period changes only at midnight or at one of its `times` bounds,
/// read in its own time zone, so those minutes of each day are the only candidates
/// (a few thousand checks, not one per minute).
pub fn next_change(intervals: &[&TimeInterval], now: f64, active: bool) -> Option<f64> {
    let inside = |t: f64| intervals.iter().any(|i| i.contains(t));
    let Ok(start) = Timestamp::from_second(now.floor() as i64) else {
        return None;
    };
    let mut best: Option<f64> = None;
    for period in intervals.iter().flat_map(|i| &i.periods) {
        let today = start.to_zoned(period.location.clone()).date();
        let mut minutes: Vec<u16> = std::iter::once(0)
            .chain(period.times.iter().flat_map(|&(a, b)| [a, b]))
            .filter(|&m| m < 1440)
            .collect();
        minutes.sort_unstable();
        minutes.dedup();
        // Candidates come in time order within a period: its first real change is its
        // earliest.
        'days: for offset in 0..=(4 * 366) {
            let Ok(day) = today.checked_add(jiff::Span::new().days(offset)) else {
                break;
            };
            for &m in &minutes {
                let Ok(zoned) = day
                    .at((m / 60) as i8, (m % 60) as i8, 0, 0)
                    .to_zoned(period.location.clone())
                else {
                    continue;
                };
                let t = zoned.timestamp().as_second() as f64;
                if best.is_some_and(|b| t >= b) {
                    break 'days;
                }
                if t > now && inside(t) == active && inside(t - 60.0) != active {
                    best = Some(t);
                    break 'days;
                }
            }
        }
    }
    best
}

/// One `[[time_interval]]` entry. Each list left empty matches every time; within a list
/// any range matches, and every list given must match (Alertmanager's `TimePeriod`).
#[derive(Debug, Clone)]
pub struct Period {
    /// Minutes of the day, `[start, end)`, 0..=1440.
    pub times: Vec<(u16, u16)>,
    /// Weekdays, 0 = Sunday … 6 = Saturday, inclusive ranges.
    pub weekdays: Vec<(i8, i8)>,
    /// Days of the month, inclusive; negative counts from the end (-1: the last day).
    pub days_of_month: Vec<(i8, i8)>,
    /// Months, 1 = January, inclusive.
    pub months: Vec<(i8, i8)>,
    /// Years, inclusive.
    pub years: Vec<(i16, i16)>,
    /// The time zone the fields are read in (default UTC).
    pub location: TimeZone,
}

impl Period {
    /// Whether Unix time `now` falls in this period, read in its location.
    pub fn contains(&self, now: f64) -> bool {
        let Ok(ts) = Timestamp::from_second(now.floor() as i64) else {
            return false;
        };
        let t = ts.to_zoned(self.location.clone()).datetime();
        let minute = t.hour() as u16 * 60 + t.minute() as u16;
        let in_any = |ranges: &[(i8, i8)], v: i8| {
            ranges.is_empty() || ranges.iter().any(|&(a, b)| a <= v && v <= b)
        };
        let times = self.times.is_empty()
            || self
                .times
                .iter()
                .any(|&(start, end)| start <= minute && minute < end);
        let weekday = t.weekday().to_sunday_zero_offset();
        let days = t.days_in_month();
        // Alertmanager's rule: negative days count from the month's end; a range that
        // begins after the month's end matches nothing; the end is clamped to the month.
        let day_of_month = self.days_of_month.is_empty()
            || self.days_of_month.iter().any(|&(a, b)| {
                let resolve = |d: i8| if d < 0 { days + d + 1 } else { d };
                let (begin, end) = (resolve(a), resolve(b).min(days));
                begin <= days && begin <= t.day() && t.day() <= end
            });
        let years = self.years.is_empty()
            || self
                .years
                .iter()
                .any(|&(a, b)| a <= t.year() && t.year() <= b);
        times
            && in_any(&self.weekdays, weekday)
            && day_of_month
            && in_any(&self.months, t.month())
            && years
    }
}

/// A `[[time_interval]]` entry as written, each value with its offset in the file.
#[derive(Debug, Default)]
pub struct RawPeriod<'a> {
    /// `times = ["02:00-02:30"]`.
    pub times: Vec<(&'a str, usize)>,
    /// `weekdays = ["monday:friday"]`.
    pub weekdays: Vec<(&'a str, usize)>,
    /// `days_of_month = ["1:7", "-1"]`.
    pub days_of_month: Vec<(&'a str, usize)>,
    /// `months = ["december", "1:3"]`.
    pub months: Vec<(&'a str, usize)>,
    /// `years = ["2026:2027"]`.
    pub years: Vec<(&'a str, usize)>,
    /// `location = "Europe/Berlin"`.
    pub location: Option<(&'a str, usize)>,
}

/// A value that could not be read: its offset and what is wrong.
pub type Invalid = (usize, String);

impl RawPeriod<'_> {
    /// Checks every value; an error names the offending value's offset.
    pub fn build(&self) -> Result<Period, Invalid> {
        let mut period = Period {
            times: Vec::new(),
            weekdays: Vec::new(),
            days_of_month: Vec::new(),
            months: Vec::new(),
            years: Vec::new(),
            location: TimeZone::UTC,
        };
        for &(text, at) in &self.times {
            period.times.push(parse_times(text).map_err(|m| (at, m))?);
        }
        for &(text, at) in &self.weekdays {
            period.weekdays.push(
                range(text, |s| {
                    named(s, &WEEKDAYS, 0)
                        .ok_or_else(|| format!("{s:?} is not a weekday (monday … sunday)"))
                })
                .map_err(|m| (at, format!("weekdays: {m}")))?,
            );
        }
        for &(text, at) in &self.days_of_month {
            let (a, b) = range(text, |s| match s.parse::<i8>() {
                Ok(d) if d != 0 && (-31..=31).contains(&d) => Ok(d),
                _ => Err(format!(
                    "{s:?} is not a day of the month (1 … 31, or -1 … -31 counted from the end)"
                )),
            })
            .map_err(|m| (at, format!("days_of_month: {m}")))?;
            if a < 0 && b > 0 {
                return Err((at, format!("days_of_month: {text:?}: a range may go from a day counted from the start to one counted from the end (\"25:-1\"), not the other way")));
            }
            period.days_of_month.push((a, b));
        }
        for &(text, at) in &self.months {
            period.months.push(
                range(text, |s| match s.parse::<i8>() {
                    Ok(m) if (1..=12).contains(&m) => Ok(m),
                    Ok(_) => Err(format!("{s:?} is not a month (1 … 12)")),
                    Err(_) => named(s, &MONTHS, 1).ok_or_else(|| {
                        format!("{s:?} is not a month (january … december, or 1 … 12)")
                    }),
                })
                .map_err(|m| (at, format!("months: {m}")))?,
            );
        }
        for &(text, at) in &self.years {
            period.years.push(
                range(text, |s| match s.parse::<i16>() {
                    Ok(y) if (1..=9999).contains(&y) => Ok(y),
                    _ => Err(format!("{s:?} is not a year (e.g. 2026)")),
                })
                .map_err(|m| (at, format!("years: {m}")))?,
            );
        }
        if let Some((name, at)) = self.location {
            period.location = location(name).map_err(|m| (at, format!("location: {m}")))?;
        }
        Ok(period)
    }
}

const WEEKDAYS: [&str; 7] = [
    "sunday",
    "monday",
    "tuesday",
    "wednesday",
    "thursday",
    "friday",
    "saturday",
];

const MONTHS: [&str; 12] = [
    "january",
    "february",
    "march",
    "april",
    "may",
    "june",
    "july",
    "august",
    "september",
    "october",
    "november",
    "december",
];

fn named(s: &str, names: &[&str], first: i8) -> Option<i8> {
    let s = s.trim().to_ascii_lowercase();
    names.iter().position(|n| *n == s).map(|i| i as i8 + first)
}

/// `A` or `A:B` with `A <= B` (for negative days: both counted from the end).
fn range<T: Copy + PartialOrd + std::fmt::Display>(
    text: &str,
    one: impl Fn(&str) -> Result<T, String>,
) -> Result<(T, T), String> {
    let (a, b) = match text.split_once(':') {
        Some((a, b)) => (one(a.trim())?, one(b.trim())?),
        None => {
            let v = one(text.trim())?;
            (v, v)
        }
    };
    let zero_crossing = format!("{a}").starts_with('-') != format!("{b}").starts_with('-');
    if a > b && !zero_crossing {
        return Err(format!("{text:?}: the start comes after the end"));
    }
    Ok((a, b))
}

/// `HH:MM-HH:MM`, the end after the start and at most `24:00`.
fn parse_times(text: &str) -> Result<(u16, u16), String> {
    let hint = "times: give \"HH:MM-HH:MM\" from 00:00 to 24:00, the end after the start (e.g. \"02:00-02:30\"; split a range over midnight in two: \"22:00-24:00\", \"00:00-06:00\")";
    let (start, end) = text
        .split_once('-')
        .ok_or_else(|| format!("{text:?}: {hint}"))?;
    let minute = |s: &str| -> Result<u16, String> {
        let (h, m) = s
            .trim()
            .split_once(':')
            .ok_or_else(|| format!("{text:?}: {s:?} is not HH:MM; {hint}"))?;
        let (h, m) = match (h.parse::<u16>(), m.parse::<u16>()) {
            (Ok(h), Ok(m)) if m < 60 && h <= 24 && (h < 24 || m == 0) => (h, m),
            _ => {
                return Err(format!(
                    "{text:?}: {:?} is not a time of day; {hint}",
                    s.trim()
                ))
            }
        };
        Ok(h * 60 + m)
    };
    let (start, end) = (minute(start)?, minute(end)?);
    if start >= end {
        return Err(format!("{text:?}: the end is not after the start; {hint}"));
    }
    Ok((start, end))
}

/// `UTC`, `Local` (the system's zone), a fixed offset (`+02:00`) or an IANA name read
/// from the system's zoneinfo (`Europe/Berlin`).
fn location(name: &str) -> Result<TimeZone, String> {
    let name = name.trim();
    if name.eq_ignore_ascii_case("utc") || name == "Z" {
        return Ok(TimeZone::UTC);
    }
    if name.eq_ignore_ascii_case("local") {
        return TimeZone::try_system()
            .map_err(|e| format!("cannot read the system's time zone: {e}"));
    }
    if let Some(sign) = name.chars().next().filter(|c| *c == '+' || *c == '-') {
        let rest = &name[1..];
        let (h, m) = rest.split_once(':').unwrap_or((rest, "0"));
        let offset = match (h.parse::<i32>(), m.parse::<i32>()) {
            (Ok(h), Ok(m)) if h <= 25 && m < 60 => {
                (h * 3600 + m * 60) * if sign == '-' { -1 } else { 1 }
            }
            _ => {
                return Err(format!(
                    "{name:?} is not an offset (e.g. \"+02:00\", \"-05:30\")"
                ))
            }
        };
        let offset =
            jiff::tz::Offset::from_seconds(offset).map_err(|e| format!("{name:?}: {e}"))?;
        return Ok(TimeZone::fixed(offset));
    }
    TimeZone::get(name).map_err(|_| {
        format!(
            "unknown time zone {name:?}: give UTC, Local, an offset such as \"+02:00\", or an IANA name from /usr/share/zoneinfo such as \"Europe/Berlin\" (is the tzdata package installed?)"
        )
    })
}

/// A time given on the command line or in a rule test: an RFC 3339 timestamp (`2026-03-29T01:30:00Z`,
/// `…+02:00`) or a civil time in a named zone (`2026-03-29T03:30[Europe/Berlin]`), as
/// Unix seconds.
pub fn parse_time(text: &str) -> Result<f64, String> {
    if let Ok(ts) = text.parse::<jiff::Timestamp>() {
        return Ok(ts.as_second() as f64);
    }
    text.parse::<jiff::Zoned>()
        .map(|z| z.timestamp().as_second() as f64)
        .map_err(|e| {
            format!(
                "not a time ({e}); give e.g. 2026-03-29T01:30:00Z, 2026-03-29T03:30:00+02:00 or 2026-03-29T03:30[Europe/Berlin]"
            )
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn period(raw: RawPeriod) -> Period {
        raw.build().unwrap()
    }

    fn at(rfc3339: &str) -> f64 {
        rfc3339.parse::<Timestamp>().unwrap().as_second() as f64
    }

    #[test]
    fn times_weekdays_and_zone() {
        let office = period(RawPeriod {
            times: vec![("09:00-17:00", 0)],
            weekdays: vec![("monday:friday", 0)],
            location: Some(("Europe/Berlin", 0)),
            ..Default::default()
        });
        // Thursday 2026-12-03 08:30 UTC is 09:30 in Berlin (CET, +01:00).
        assert!(office.contains(at("2026-12-03T08:30:00Z")));
        assert!(!office.contains(at("2026-12-03T07:59:00Z")), "08:59 Berlin");
        assert!(
            !office.contains(at("2026-12-03T16:00:00Z")),
            "17:00 is the end"
        );
        assert!(!office.contains(at("2026-12-05T10:00:00Z")), "a Saturday");
    }

    #[test]
    fn next_start_and_end_of_office_hours() {
        let office = TimeInterval {
            name: "office".into(),
            periods: vec![period(RawPeriod {
                times: vec![("09:00-17:00", 0)],
                weekdays: vec![("monday:friday", 0)],
                location: Some(("Europe/Berlin", 0)),
                ..Default::default()
            })],
        };
        let both = [&office];
        // Thursday 09:30 Berlin: ends at 17:00 Berlin, starts again Friday 09:00.
        let thursday = at("2026-12-03T08:30:00Z");
        assert_eq!(
            next_change(&both, thursday, false),
            Some(at("2026-12-03T16:00:00Z"))
        );
        assert_eq!(
            next_change(&both, thursday, true),
            Some(at("2026-12-04T08:00:00Z"))
        );
        // Friday after hours: Monday 09:00 Berlin.
        assert_eq!(
            next_change(&both, at("2026-12-04T16:00:00Z"), true),
            Some(at("2026-12-07T08:00:00Z"))
        );
        // An interval of the past never starts again.
        let gone = TimeInterval {
            name: "gone".into(),
            periods: vec![period(RawPeriod {
                years: vec![("2020", 0)],
                ..Default::default()
            })],
        };
        assert_eq!(next_change(&[&gone], thursday, true), None);
    }

    #[test]
    fn dst_boundary_in_berlin() {
        // Summer time starts 2026-03-29 at 02:00 CET (01:00 UTC): 02:00-03:00 local does
        // not exist that night, and 03:30 local is 01:30 UTC, not 02:30 UTC.
        let backup = period(RawPeriod {
            times: vec![("03:00-04:00", 0)],
            location: Some(("Europe/Berlin", 0)),
            ..Default::default()
        });
        assert!(backup.contains(at("2026-03-29T01:30:00Z")), "03:30 CEST");
        assert!(!backup.contains(at("2026-03-29T02:30:00Z")), "04:30 CEST");
        // The night before, 03:30 local is 02:30 UTC.
        assert!(backup.contains(at("2026-03-28T02:30:00Z")));
        assert!(!backup.contains(at("2026-03-28T01:30:00Z")));
    }

    #[test]
    fn days_of_month_from_the_end_months_years() {
        let last_days = period(RawPeriod {
            days_of_month: vec![("-2:-1", 0)],
            months: vec![("february", 0)],
            years: vec![("2028", 0)],
            ..Default::default()
        });
        assert!(last_days.contains(at("2028-02-28T12:00:00Z")), "leap year");
        assert!(last_days.contains(at("2028-02-29T12:00:00Z")));
        assert!(!last_days.contains(at("2028-02-27T12:00:00Z")));
        assert!(!last_days.contains(at("2027-02-28T12:00:00Z")), "not 2027");
        let to_end = period(RawPeriod {
            days_of_month: vec![("25:-1", 0)],
            ..Default::default()
        });
        assert!(to_end.contains(at("2026-04-30T00:00:00Z")));
        assert!(!to_end.contains(at("2026-04-24T00:00:00Z")));
    }

    #[test]
    fn bad_values_are_refused_with_their_offset() {
        let err = |raw: RawPeriod| raw.build().unwrap_err();
        assert!(err(RawPeriod {
            times: vec![("25:00-26:00", 7)],
            ..Default::default()
        })
        .1
        .contains("\"25:00\" is not a time of day"));
        assert_eq!(
            err(RawPeriod {
                times: vec![("02:00-02:30", 0), ("23:00-01:00", 9)],
                ..Default::default()
            })
            .0,
            9
        );
        assert!(err(RawPeriod {
            location: Some(("Mars/Olympus", 0)),
            ..Default::default()
        })
        .1
        .contains("unknown time zone"));
        assert!(err(RawPeriod {
            weekdays: vec![("funday", 0)],
            ..Default::default()
        })
        .1
        .contains("not a weekday"));
        assert!(err(RawPeriod {
            days_of_month: vec![("0", 0)],
            ..Default::default()
        })
        .1
        .contains("not a day of the month"));
        let fixed = period(RawPeriod {
            times: vec![("00:00-01:00", 0)],
            location: Some(("+02:00", 0)),
            ..Default::default()
        });
        assert!(fixed.contains(at("2026-06-01T22:30:00Z")));
    }
}
