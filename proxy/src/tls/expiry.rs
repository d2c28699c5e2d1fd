//! When a certificate expires: the `notAfter` of its validity, read from the DER.
//!
//! The X.509 parser rustls uses (webpki) keeps the validity to itself, and a full X.509 crate
//! for one field is a lot of code; this walks the few DER elements in front of it
//! (RFC 5280 §4.1): `Certificate → tbsCertificate → [version] serial signature issuer
//! validity { notBefore, notAfter }`, with `UTCTime` or `GeneralizedTime`.

use std::time::{Duration, SystemTime};

const SEQUENCE: u8 = 0x30;
const INTEGER: u8 = 0x02;
const EXPLICIT_0: u8 = 0xa0;
const UTC_TIME: u8 = 0x17;
const GENERALIZED_TIME: u8 = 0x18;

/// The `notAfter` of a DER certificate, or `None` if it is not a certificate this can read.
pub fn not_after(der: &[u8]) -> Option<SystemTime> {
    let (cert, _) = element(der, SEQUENCE)?;
    let (tbs, _) = element(cert, SEQUENCE)?;
    let mut rest = tbs;
    if rest.first() == Some(&EXPLICIT_0) {
        rest = element(rest, EXPLICIT_0)?.1;
    }
    rest = element(rest, INTEGER)?.1; // serialNumber
    rest = element(rest, SEQUENCE)?.1; // signature
    rest = element(rest, SEQUENCE)?.1; // issuer
    let (validity, _) = element(rest, SEQUENCE)?;
    let (&tag, _) = validity.split_first()?;
    let after = element(validity, tag)?.1; // skip notBefore
    let (&tag, _) = after.split_first()?;
    let (time, _) = element(after, tag)?;
    let digits = std::str::from_utf8(time).ok()?;
    let full = match tag {
        UTC_TIME => {
            let yy: u32 = digits.get(..2)?.parse().ok()?;
            format!("{}{digits}", if yy < 50 { "20" } else { "19" })
        }
        GENERALIZED_TIME => digits.to_owned(),
        _ => return None,
    };
    parse_time(&full)
}

/// One DER element of type `tag` at the start of `input`: its contents and what follows.
fn element(input: &[u8], tag: u8) -> Option<(&[u8], &[u8])> {
    let (&found, rest) = input.split_first()?;
    if found != tag {
        return None;
    }
    let (&first, rest) = rest.split_first()?;
    let (len, rest) = if first < 0x80 {
        (usize::from(first), rest)
    } else {
        let n = usize::from(first & 0x7f);
        if n == 0 || n > 4 || rest.len() < n {
            return None;
        }
        let len = rest[..n]
            .iter()
            .fold(0usize, |acc, &b| (acc << 8) | usize::from(b));
        (len, &rest[n..])
    };
    (rest.len() >= len).then(|| rest.split_at(len))
}

/// `YYYYMMDDHHMMSSZ` as a time.
fn parse_time(text: &str) -> Option<SystemTime> {
    if text.len() != 15 || !text.ends_with('Z') {
        return None;
    }
    let field = |range: std::ops::Range<usize>| text.get(range)?.parse::<u32>().ok();
    let (year, month, day) = (field(0..4)?, field(4..6)?, field(6..8)?);
    let (hour, minute, second) = (field(8..10)?, field(10..12)?, field(12..14)?);
    if !(1..=12).contains(&month) || !(1..=31).contains(&day) || hour > 23 || minute > 59 {
        return None;
    }
    let days = days_from_civil(i64::from(year), month, day);
    let secs = days * 86_400 + i64::from(hour * 3600 + minute * 60 + second.min(60));
    let secs = u64::try_from(secs).ok()?;
    SystemTime::UNIX_EPOCH.checked_add(Duration::from_secs(secs))
}

/// Days since 1970-01-01 of a proleptic Gregorian date (Howard Hinnant's algorithm).
fn days_from_civil(year: i64, month: u32, day: u32) -> i64 {
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let m = i64::from(month);
    let doy = (153 * (if m > 2 { m - 3 } else { m + 9 }) + 2) / 5 + i64::from(day) - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

#[cfg(test)]
mod tests {
    use super::*;

    fn unix(t: SystemTime) -> u64 {
        t.duration_since(SystemTime::UNIX_EPOCH).unwrap().as_secs()
    }

    #[test]
    fn calendar_dates_become_unix_seconds() {
        assert_eq!(days_from_civil(1970, 1, 1), 0);
        assert_eq!(days_from_civil(2000, 3, 1), 11_017);
        assert_eq!(unix(parse_time("20380119031408Z").unwrap()), 2_147_483_648);
        assert_eq!(unix(parse_time("20240229235959Z").unwrap()), 1_709_251_199);
        assert_eq!(parse_time("2024022923595Z"), None);
        assert_eq!(parse_time("20241329000000Z"), None);
    }

    #[test]
    fn reads_the_not_after_of_generated_certificates() {
        // rcgen writes UTCTime before 2050 and GeneralizedTime from 2050 on (RFC 5280).
        for (year, expected) in [(2031, 1_956_441_600u64), (2051, 2_587_593_600)] {
            let mut params = rcgen::CertificateParams::new(vec!["a.test".into()]).unwrap();
            params.not_after = rcgen::date_time_ymd(year, 12, 31);
            let key = rcgen::KeyPair::generate().unwrap();
            let cert = params.self_signed(&key).unwrap();
            assert_eq!(not_after(cert.der()).map(unix), Some(expected), "{year}");
        }
    }

    #[test]
    fn garbage_is_none() {
        assert_eq!(not_after(b""), None);
        assert_eq!(not_after(&[0x30, 0x82, 0xff]), None);
        assert_eq!(not_after(&[0x30, 0x03, 0x30, 0x01, 0x00]), None);
    }
}
