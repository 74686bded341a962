//! PII redaction: e-mail addresses, phone numbers, IPv4 and IPv6 addresses and card-like numbers are
//! replaced by tags (`<EMAIL>`, `<PHONE>`, `<IP>`, `<CARD>`). Candidates are found by regular
//! expressions and then checked in code (octet ranges, IPv6 parsing, the Luhn checksum, digit counts)
//! so that version numbers, dates, times and Rust paths such as `Add::add` are left alone.

use std::net::Ipv6Addr;

use regex::Regex;
use serde::{Deserialize, Serialize};

/// A kind of personal information.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum PiiKind {
    Email,
    Phone,
    Ip,
    Card,
}

impl PiiKind {
    pub const ALL: [PiiKind; 4] = [PiiKind::Email, PiiKind::Phone, PiiKind::Ip, PiiKind::Card];

    pub fn name(self) -> &'static str {
        match self {
            PiiKind::Email => "email",
            PiiKind::Phone => "phone",
            PiiKind::Ip => "ip",
            PiiKind::Card => "card",
        }
    }

    pub fn from_name(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|k| k.name() == name)
    }

    pub fn tag(self) -> &'static str {
        match self {
            PiiKind::Email => "<EMAIL>",
            PiiKind::Phone => "<PHONE>",
            PiiKind::Ip => "<IP>",
            PiiKind::Card => "<CARD>",
        }
    }
}

/// How many of each kind a text had.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PiiCounts {
    pub email: u64,
    pub phone: u64,
    pub ip: u64,
    pub card: u64,
}

impl PiiCounts {
    fn bump(&mut self, kind: PiiKind) {
        match kind {
            PiiKind::Email => self.email += 1,
            PiiKind::Phone => self.phone += 1,
            PiiKind::Ip => self.ip += 1,
            PiiKind::Card => self.card += 1,
        }
    }

    pub fn add(&mut self, other: &PiiCounts) {
        self.email += other.email;
        self.phone += other.phone;
        self.ip += other.ip;
        self.card += other.card;
    }
}

/// Finds and replaces the configured kinds.
pub struct PiiRedactor {
    kinds: Vec<PiiKind>,
    email: Regex,
    ipv4: Regex,
    ipv6: Regex,
    phone: Regex,
    card: Regex,
}

impl PiiRedactor {
    pub fn new(kinds: &[PiiKind]) -> Self {
        let re = |p: &str| Regex::new(p).expect("built-in pattern is valid");
        Self {
            kinds: kinds.to_vec(),
            email: re(
                r"[A-Za-z0-9][A-Za-z0-9._%+\-]*@[A-Za-z0-9](?:[A-Za-z0-9\-]*[A-Za-z0-9])?(?:\.[A-Za-z0-9](?:[A-Za-z0-9\-]*[A-Za-z0-9])?)*\.[A-Za-z]{2,}",
            ),
            ipv4: re(r"\b\d{1,3}\.\d{1,3}\.\d{1,3}\.\d{1,3}\b"),
            ipv6: re(r"(?i)[0-9a-f]{0,4}(?::[0-9a-f]{0,4}){2,7}"),
            phone: re(
                r"(?:\+\d{1,3}[ .\-]?)?(?:\(\d{1,4}\)[ .\-]?|\d{2,4}[ .\-])\d{3,4}[ .\-]\d{3,4}",
            ),
            card: re(r"\d(?:[ \-]?\d){12,18}"),
        }
    }

    pub fn kinds(&self) -> &[PiiKind] {
        &self.kinds
    }

    /// The text with every match replaced by its tag and the counts, or `None` when nothing matched.
    pub fn redact(&self, text: &str) -> Option<(String, PiiCounts)> {
        let has_at = memchr_ascii(text, b'@');
        let has_digit = text.bytes().any(|b| b.is_ascii_digit());
        if !has_at && !has_digit {
            return None;
        }
        let mut spans: Vec<(usize, usize, PiiKind)> = Vec::new();
        for &kind in &self.kinds {
            match kind {
                PiiKind::Email if has_at => {
                    spans.extend(
                        self.email
                            .find_iter(text)
                            .map(|m| (m.start(), m.end(), kind)),
                    );
                }
                PiiKind::Ip if has_digit => {
                    spans.extend(
                        self.ipv4
                            .find_iter(text)
                            .filter(|m| is_ipv4(text, m.start(), m.end()))
                            .map(|m| (m.start(), m.end(), kind)),
                    );
                    if text.contains(':') {
                        spans.extend(
                            self.ipv6
                                .find_iter(text)
                                .filter(|m| is_ipv6(text, m.start(), m.end()))
                                .map(|m| (m.start(), m.end(), kind)),
                        );
                    }
                }
                PiiKind::Card if has_digit => {
                    spans.extend(
                        self.card
                            .find_iter(text)
                            .filter(|m| is_card(text, m.start(), m.end()))
                            .map(|m| (m.start(), m.end(), kind)),
                    );
                }
                PiiKind::Phone if has_digit => {
                    spans.extend(
                        self.phone
                            .find_iter(text)
                            .filter(|m| is_phone(text, m.start(), m.end()))
                            .map(|m| (m.start(), m.end(), kind)),
                    );
                }
                _ => {}
            }
        }
        if spans.is_empty() {
            return None;
        }
        // Earliest first; at one start the longest; a later span overlapping a taken one is dropped.
        spans.sort_by_key(|&(s, e, kind)| (s, std::cmp::Reverse(e), kind));
        let mut out = String::with_capacity(text.len());
        let mut counts = PiiCounts::default();
        let mut at = 0;
        for (start, end, kind) in spans {
            if start < at {
                continue;
            }
            out.push_str(&text[at..start]);
            out.push_str(kind.tag());
            counts.bump(kind);
            at = end;
        }
        out.push_str(&text[at..]);
        Some((out, counts))
    }
}

fn memchr_ascii(text: &str, byte: u8) -> bool {
    text.as_bytes().contains(&byte)
}

fn byte_before(text: &str, start: usize) -> Option<u8> {
    start.checked_sub(1).map(|i| text.as_bytes()[i])
}

fn byte_after(text: &str, end: usize) -> Option<u8> {
    text.as_bytes().get(end).copied()
}

fn is_ipv4(text: &str, start: usize, end: usize) -> bool {
    // Not part of a longer dotted run such as a version number `1.2.3.4.5`.
    let dotted = |b: Option<u8>| b == Some(b'.');
    if dotted(byte_before(text, start))
        && byte_before(text, start - 1).is_some_and(|b| b.is_ascii_digit())
    {
        return false;
    }
    if dotted(byte_after(text, end))
        && byte_after(text, end + 1).is_some_and(|b| b.is_ascii_digit())
    {
        return false;
    }
    text[start..end].split('.').all(|octet| {
        octet.parse::<u16>().is_ok_and(|v| v <= 255) && (octet == "0" || !octet.starts_with('0'))
    })
}

fn is_ipv6(text: &str, start: usize, end: usize) -> bool {
    let candidate = &text[start..end];
    let word =
        |b: Option<u8>| b.is_some_and(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b':');
    if word(byte_before(text, start)) || word(byte_after(text, end)) {
        return false;
    }
    let groups = candidate.split(':').filter(|g| !g.is_empty()).count();
    // Full addresses, or compressed ones with enough groups and a digit: `Add::add` is Rust, not an address.
    let plausible = groups == 8 || (groups >= 3 && candidate.bytes().any(|b| b.is_ascii_digit()));
    plausible && candidate.parse::<Ipv6Addr>().is_ok()
}

fn is_card(text: &str, start: usize, end: usize) -> bool {
    if byte_before(text, start).is_some_and(|b| b.is_ascii_alphanumeric())
        || byte_after(text, end).is_some_and(|b| b.is_ascii_alphanumeric())
    {
        return false;
    }
    let digits: Vec<u32> = text[start..end]
        .bytes()
        .filter(u8::is_ascii_digit)
        .map(|b| u32::from(b - b'0'))
        .collect();
    (13..=19).contains(&digits.len()) && luhn(&digits)
}

/// The Luhn checksum that payment card numbers satisfy.
pub fn luhn(digits: &[u32]) -> bool {
    let sum: u32 = digits
        .iter()
        .rev()
        .enumerate()
        .map(|(i, &d)| {
            if i % 2 == 1 {
                if d * 2 > 9 { d * 2 - 9 } else { d * 2 }
            } else {
                d
            }
        })
        .sum();
    sum.is_multiple_of(10)
}

fn is_phone(text: &str, start: usize, end: usize) -> bool {
    if byte_before(text, start).is_some_and(|b| b.is_ascii_alphanumeric() || b == b'.' || b == b'-')
        || byte_after(text, end).is_some_and(|b| {
            b.is_ascii_alphanumeric()
                || (b == b'.' || b == b'-')
                    && byte_after(text, end + 1).is_some_and(|b| b.is_ascii_digit())
        })
    {
        return false;
    }
    let digits = text[start..end].bytes().filter(u8::is_ascii_digit).count();
    (8..=15).contains(&digits)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn redact(text: &str) -> String {
        PiiRedactor::new(&PiiKind::ALL)
            .redact(text)
            .map_or_else(|| text.to_owned(), |(t, _)| t)
    }

    #[test]
    fn emails() {
        assert_eq!(
            redact("write to jane.doe+news@mail.example.co.uk today"),
            "write to <EMAIL> today"
        );
        assert_eq!(
            redact("user@localhost is no address"),
            "user@localhost is no address"
        );
    }

    #[test]
    fn ip_addresses() {
        assert_eq!(
            redact("server 192.168.0.17 answered"),
            "server <IP> answered"
        );
        assert_eq!(
            redact("version 1.2.3.4.5 and 300.1.1.1 stay"),
            "version 1.2.3.4.5 and 300.1.1.1 stay"
        );
        assert_eq!(redact("v6 2001:db8:85a3::8a2e:370:7334 ok"), "v6 <IP> ok");
        assert_eq!(redact("fe80:0:0:0:202:b3ff:fe1e:8329"), "<IP>");
        assert_eq!(
            redact("impl Add::add and 10:30:00 and a::b::c"),
            "impl Add::add and 10:30:00 and a::b::c"
        );
    }

    #[test]
    fn phones() {
        assert_eq!(redact("call +1 415-555-0132 now"), "call <PHONE> now");
        assert_eq!(redact("call (415) 555-0132"), "call <PHONE>");
        assert_eq!(
            redact("on 2023-10-15 at 12:30 we had 1,234,567 visits"),
            "on 2023-10-15 at 12:30 we had 1,234,567 visits"
        );
    }

    #[test]
    fn cards_need_a_valid_checksum() {
        assert_eq!(
            redact("card 4111 1111 1111 1111 expires"),
            "card <CARD> expires"
        );
        assert_eq!(
            redact("card 4111-1111-1111-1112 is wrong"),
            "card 4111-1111-1111-1112 is wrong"
        );
        assert!(luhn(&[7, 9, 9, 2, 7, 3, 9, 8, 7, 1, 3]));
    }

    #[test]
    fn only_configured_kinds_and_counts() {
        let r = PiiRedactor::new(&[PiiKind::Email]);
        let (text, counts) = r.redact("a@b.io and c@d.io at 10.0.0.1").unwrap();
        assert_eq!(text, "<EMAIL> and <EMAIL> at 10.0.0.1");
        assert_eq!(
            counts,
            PiiCounts {
                email: 2,
                ..PiiCounts::default()
            }
        );
        assert!(r.redact("nothing here").is_none());
    }
}
