//! Wall-clock times as operators type and read them (`weirctl`, the status page): UTC RFC 3339
//! (`2026-11-29T22:08:34Z`), with no date library. Civil-date arithmetic after Howard Hinnant's
//! `days_from_civil`.

/// Milliseconds since the epoch as UTC, e.g. `2026-11-29T22:08:34.120Z`.
pub fn format_ms(ms: i64) -> String {
    let (days, in_day) = (ms.div_euclid(86_400_000), ms.rem_euclid(86_400_000));
    let (y, m, d) = civil_from_days(days);
    let (h, min, s, milli) =
        (in_day / 3_600_000, in_day / 60_000 % 60, in_day / 1000 % 60, in_day % 1000);
    format!("{y:04}-{m:02}-{d:02}T{h:02}:{min:02}:{s:02}.{milli:03}Z")
}

/// Reads `2026-11-29T22:08:34Z`, `2026-11-29T22:08:34.5+01:00`, `2026-11-29 22:08` (UTC when no
/// zone is given), `2026-11-29` (midnight UTC) or milliseconds since the epoch.
pub fn parse_datetime(text: &str) -> Result<i64, String> {
    let text = text.trim();
    let bad = |why: &str| {
        format!(
            "{text:?} is not a time ({why}); use RFC 3339 like 2026-11-29T22:08:34Z, or \
             milliseconds since the epoch"
        )
    };
    if !text.is_empty() && text.bytes().all(|b| b.is_ascii_digit()) {
        return text.parse::<i64>().map_err(|_| bad("too large"));
    }
    let (date, rest) = match text.find(['T', 't', ' ']) {
        Some(i) => (&text[..i], &text[i + 1..]),
        None => (text, ""),
    };
    let parts: Vec<&str> = date.split('-').collect();
    let [y, m, d] = parts.as_slice() else { return Err(bad("the date must be YYYY-MM-DD")) };
    let number = |s: &str, len: usize| {
        (s.len() == len && s.bytes().all(|b| b.is_ascii_digit()))
            .then(|| s.parse::<i64>().ok())
            .flatten()
    };
    let (Some(y), Some(m), Some(d)) = (number(y, 4), number(m, 2), number(d, 2)) else {
        return Err(bad("the date must be YYYY-MM-DD"));
    };
    if !(1..=12).contains(&m) || d < 1 || d > days_in_month(y, m) {
        return Err(bad("no such day"));
    }
    let (clock, offset_ms) = split_zone(rest).ok_or_else(|| bad("bad time zone"))?;
    let mut in_day = 0;
    if !clock.is_empty() {
        let (hms, fraction) = clock.split_once('.').unwrap_or((clock, ""));
        let fields: Vec<&str> = hms.split(':').collect();
        let (h, min, s) = match fields.as_slice() {
            [h, min] => (number(h, 2), number(min, 2), Some(0)),
            [h, min, s] => (number(h, 2), number(min, 2), number(s, 2)),
            _ => (None, None, None),
        };
        let (Some(h), Some(min), Some(s)) = (h, min, s) else {
            return Err(bad("the time must be HH:MM[:SS[.fff]]"));
        };
        if h > 23 || min > 59 || s > 59 {
            return Err(bad("no such time of day"));
        }
        if !fraction.bytes().all(|b| b.is_ascii_digit()) {
            return Err(bad("bad fraction of a second"));
        }
        let milli: String = fraction.chars().chain("000".chars()).take(3).collect();
        in_day = ((h * 60 + min) * 60 + s) * 1000 + milli.parse::<i64>().unwrap_or(0);
    }
    Ok(days_from_civil(y, m, d) * 86_400_000 + in_day - offset_ms)
}

/// Splits `22:08:34+01:00` into the clock and the zone's offset from UTC in milliseconds.
fn split_zone(rest: &str) -> Option<(&str, i64)> {
    if let Some(clock) = rest.strip_suffix(['Z', 'z']) {
        return Some((clock, 0));
    }
    match rest.rfind(['+', '-']) {
        Some(i) => {
            let (sign, zone) = (if &rest[i..=i] == "-" { -1 } else { 1 }, &rest[i + 1..]);
            let (h, m) = zone.split_once(':')?;
            let (h, m) = (h.parse::<i64>().ok()?, m.parse::<i64>().ok()?);
            Some((&rest[..i], sign * (h * 60 + m) * 60_000))
        }
        None => Some((rest, 0)),
    }
}

fn days_in_month(y: i64, m: i64) -> i64 {
    let leap = (y % 4 == 0 && y % 100 != 0) || y % 400 == 0;
    match m {
        2 if leap => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = if y >= 0 { y } else { y - 399 } / 400;
    let yoe = y - era * 400;
    let doy = (153 * (if m > 2 { m - 3 } else { m + 9 }) + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

fn civil_from_days(z: i64) -> (i64, i64, i64) {
    let z = z + 719_468;
    let era = if z >= 0 { z } else { z - 146_096 } / 146_097;
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    (if m <= 2 { yoe + era * 400 + 1 } else { yoe + era * 400 }, m, d)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_and_parses_the_same_instant() {
        let ms = 1_796_162_914_120; // 2026-12-01T22:08:34.120Z
        assert_eq!(format_ms(ms), "2026-12-01T22:08:34.120Z");
        assert_eq!(parse_datetime("2026-12-01T22:08:34.120Z"), Ok(ms));
        assert_eq!(parse_datetime("2026-12-01T23:08:34.12+01:00"), Ok(ms));
        assert_eq!(parse_datetime("2026-12-01 22:08:34.120"), Ok(ms), "no zone: UTC");
        assert_eq!(parse_datetime(&ms.to_string()), Ok(ms));
        assert_eq!(format_ms(0), "1970-01-01T00:00:00.000Z");
        assert_eq!(parse_datetime("2024-02-29"), Ok(1_709_164_800_000));
    }

    #[test]
    fn nonsense_is_refused_with_the_expected_form() {
        for bad in
            ["yesterday", "2026-13-01", "2026-02-30", "2026-11-29T25:00", "2026-11-29T10:00+x"]
        {
            let err = parse_datetime(bad).unwrap_err();
            assert!(err.contains("RFC 3339"), "{bad}: {err}");
        }
    }
}
