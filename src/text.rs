//! Small text helpers shared by every layer: one-line texts and the times written in
//! messages, logs and payloads. No domain types here, so that anything may use them.

/// `2026-11-28 08:12:00 UTC`.
pub fn format_time(unix: f64) -> String {
    chrono::DateTime::from_timestamp(unix.floor() as i64, 0).map_or_else(
        || format!("@{unix}"),
        |t| t.format("%Y-%m-%d %H:%M:%S UTC").to_string(),
    )
}

/// Control characters (a newline in a server name or a check reply) become spaces, so
/// that nothing HAProxy reports can break a subject line or forge a header.
pub fn one_line(text: &str) -> String {
    text.chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect()
}

/// `2026-11-28T08:12:00Z`, `2026-11-28T08:12:00.5Z`: RFC 3339 in UTC the way Go writes
/// it (`time.RFC3339Nano`: the fraction without trailing zeros, none for whole seconds),
/// which is what Alertmanager posts and what its receivers have seen, for every JSON
/// payload and for Alertmanager's API.
pub fn rfc3339(unix: f64) -> String {
    let secs = unix.floor();
    let nanos = ((unix - secs) * 1e9).round().clamp(0.0, 999_999_999.0) as u32;
    chrono::DateTime::from_timestamp(secs as i64, nanos).map_or_else(
        || "0001-01-01T00:00:00Z".to_string(),
        |t| {
            let text = t.to_rfc3339_opts(chrono::SecondsFormat::Nanos, true);
            // `…:00.500000000Z` → `…:00.5Z`, `…:00.000000000Z` → `…:00Z`.
            let (time, _) = text.split_at(text.len() - 1);
            let time = time.trim_end_matches('0').trim_end_matches('.');
            format!("{time}Z")
        },
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc3339_is_written_like_go_without_trailing_zeros() {
        assert_eq!(rfc3339(1_800_000_000.0), "2027-01-15T08:00:00Z");
        assert_eq!(rfc3339(1_800_000_000.5), "2027-01-15T08:00:00.5Z");
        assert_eq!(rfc3339(1_800_000_000.25), "2027-01-15T08:00:00.25Z");
        assert_eq!(rfc3339(1_800_000_010.0), "2027-01-15T08:00:10Z");
        assert_eq!(rfc3339(0.0), "1970-01-01T00:00:00Z");
    }
}
