//! The service record: what a service instance tells the registry about
//! itself, and what the registry tells dependents about it.
//!
//! On the wire it is the Go struct of the original, `{"Name": .., "Addr": ..,
//! "RequiredServices": [..]}`. We always write the Go field names, and read
//! them as Go's `encoding/json` does: in any case, unknown fields ignored.

use std::collections::BTreeMap;

use std::net::{Ipv4Addr, Ipv6Addr};

use serde::de::{Error as _, IgnoredAny, MapAccess, Visitor};
use serde::{Deserialize, Deserializer, Serialize};

/// A `RequiredServices` entry meaning "every service" (a gateway needs it).
pub const EVERY_SERVICE: &str = "*";

/// The longest service name, in bytes: as long as the longest DNS name. A
/// name is a key of the table, a path segment and part of every answer that
/// lists its instances; unbounded, a few registrations could make answers
/// larger than a host reads.
pub const MAX_NAME: usize = 253;

/// The most `RequiredServices` entries a record may hold (`*` stands for
/// every service, so no service needs to list more).
pub const MAX_REQUIRED: usize = 256;

/// The most bytes the `RequiredServices` entries of a record may hold
/// together.
pub const MAX_REQUIRED_BYTES: usize = 16 * 1024;

/// The registration answer: each required service name mapped to its
/// current instances.
pub type Instances = BTreeMap<String, Vec<ServiceRecord>>;

/// One instance of a service. An instance is identified by (`name`, `addr`).
///
/// It is read only from a JSON object: serde's derived `Deserialize` would
/// also take an array of the three fields in order (`["a","h:1",[]]`), which
/// nothing sends and no other reader of the protocol would accept.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize)]
pub struct ServiceRecord {
    #[serde(rename = "Name")]
    pub name: String,
    #[serde(rename = "Addr")]
    pub addr: String,
    #[serde(rename = "RequiredServices")]
    pub required_services: Vec<String>,
}

impl<'de> Deserialize<'de> for ServiceRecord {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_map(RecordVisitor)
    }
}

/// Takes a map only: anything else is refused with what a record is.
struct RecordVisitor;

/// The fields of a record as written, in Go's spelling.
const NAME: &str = "Name";
const ADDR: &str = "Addr";
const REQUIRED: &str = "RequiredServices";

impl<'de> Visitor<'de> for RecordVisitor {
    type Value = ServiceRecord;

    fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        f.write_str(
            r#"a JSON object (a record is a JSON object {"Name", "Addr", "RequiredServices"})"#,
        )
    }

    /// Reads the fields as Go's `encoding/json` does: a key names a field
    /// whatever its case, a field given twice takes the last value, and
    /// other keys are skipped. `RequiredServices: null` is no list, as
    /// in Go.
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<ServiceRecord, A::Error> {
        let (mut name, mut addr, mut required) = (None, None, None);
        while let Some(key) = map.next_key::<String>()? {
            if go_field_is(&key, NAME) {
                name = Some(map.next_value::<String>()?);
            } else if go_field_is(&key, ADDR) {
                addr = Some(map.next_value::<String>()?);
            } else if go_field_is(&key, REQUIRED) {
                required = map.next_value::<Option<Vec<String>>>()?;
            } else {
                map.next_value::<IgnoredAny>()?;
            }
        }
        Ok(ServiceRecord {
            name: name.ok_or_else(|| A::Error::missing_field(NAME))?,
            addr: addr.ok_or_else(|| A::Error::missing_field(ADDR))?,
            required_services: required.unwrap_or_default(),
        })
    }
}

/// Whether the JSON key `key` names the Go field `field`: Go's
/// `encoding/json` prefers an exact match and else takes a case-insensitive
/// one, with its own folding (ASCII letters in either case; any other
/// character folded to the upper case of its lower case, so `ſ` is `S`, as
/// `bytes.EqualFold` does). A record's fields differ once folded, so the
/// preference never matters here.
fn go_field_is(key: &str, field: &str) -> bool {
    key == field || fold(key).eq(fold(field))
}

/// `key` folded as Go folds field names (see [`go_field_is`]).
fn fold(key: &str) -> impl Iterator<Item = char> + '_ {
    // Go maps one character to one (simple case mapping); a character
    // whose full mapping is several (`ß` to `SS`) keeps its own.
    fn single(mut chars: impl Iterator<Item = char>, or: char) -> char {
        match (chars.next(), chars.next()) {
            (Some(c), None) => c,
            _ => or,
        }
    }
    key.chars().map(|c| {
        if c.is_ascii() {
            c.to_ascii_uppercase()
        } else {
            let lower = single(c.to_lowercase(), c);
            single(lower.to_uppercase(), lower)
        }
    })
}

/// Why a record cannot be registered.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RecordError {
    #[error("Name is empty")]
    EmptyName,
    #[error("Name {0:?} contains whitespace, a control character or '/'")]
    BadName(String),
    #[error("Name {0:?} is reserved")]
    ReservedName(String),
    #[error("Name is {0} bytes long, more than {MAX_NAME}")]
    LongName(usize),
    #[error(
        "Addr {0:?} is not HOST:PORT (HOST an IPv4 address like 127.0.0.1, [IPv6] or a DNS name)"
    )]
    BadAddr(String),
    #[error("Addr {0:?} has no valid port (1-65535, in digits, no leading zero)")]
    BadPort(String),
    /// An IPv6 address in another spelling than its canonical one: both
    /// would name the same instance.
    #[error(
        "Addr {given:?} spells its IPv6 address another way than {canonical:?} (RFC 5952: lower case, zeros compressed)"
    )]
    NotCanonical { given: String, canonical: String },
    /// An IPv4 address written as IPv6 (`[::ffff:127.0.0.1]`): the same
    /// instance as its IPv4 spelling.
    #[error("Addr {given:?} is the IPv4-mapped IPv6 spelling of {ipv4:?}: write it {ipv4:?}")]
    Ipv4Mapped { given: String, ipv4: String },
    /// A DNS name with upper-case letters: DNS names are case-insensitive,
    /// so it names the same instance as its lower-case spelling.
    #[error("Addr {given:?} has upper-case letters in its DNS name: write it {lower:?}")]
    UpperCase { given: String, lower: String },
    #[error("Addr {0:?} is an unspecified address, which other services cannot connect to")]
    Unspecified(String),
    #[error("RequiredServices entry {0:?} is not a service name")]
    BadRequired(String),
    #[error(
        "RequiredServices has {0} entries, more than {MAX_REQUIRED} (\"*\" means every service)"
    )]
    ManyRequired(usize),
    #[error(
        "RequiredServices holds {0} bytes of names, more than {MAX_REQUIRED_BYTES} (\"*\" means every service)"
    )]
    LongRequired(usize),
}

impl ServiceRecord {
    pub fn new(name: impl Into<String>, addr: impl Into<String>, required: Vec<String>) -> Self {
        Self {
            name: name.into(),
            addr: addr.into(),
            required_services: required,
        }
    }

    /// Checks what the registry relies on: a name usable in a URL path, an
    /// address that `http://{addr}/...` can reach, and bounded sizes (so
    /// that every answer listing records stays within what hosts read).
    pub fn validate(&self) -> Result<(), RecordError> {
        check_name(&self.name)?;
        if self.name == EVERY_SERVICE {
            return Err(RecordError::ReservedName(self.name.clone()));
        }
        check_addr(&self.addr)?;
        let required = &self.required_services;
        if required.len() > MAX_REQUIRED {
            return Err(RecordError::ManyRequired(required.len()));
        }
        let bytes = required.iter().map(String::len).sum();
        if bytes > MAX_REQUIRED_BYTES {
            return Err(RecordError::LongRequired(bytes));
        }
        for entry in required {
            if entry != EVERY_SERVICE && check_name(entry).is_err() {
                return Err(RecordError::BadRequired(entry.clone()));
            }
        }
        Ok(())
    }

    /// Whether this instance depends on `service` (by name or through `*`).
    pub fn requires(&self, service: &str) -> bool {
        requires(&self.required_services, service)
    }

    /// The identity of the instance: (`Name`, `Addr`).
    pub fn key(&self) -> (&str, &str) {
        (&self.name, &self.addr)
    }

    /// Whether `other` is the same instance (same `Name` and `Addr`).
    pub fn same_instance(&self, other: &ServiceRecord) -> bool {
        self.key() == other.key()
    }
}

/// Whether a list of required services names `service` (by name or through
/// `*`).
pub fn requires(required: &[String], service: &str) -> bool {
    required.iter().any(|r| r == service || r == EVERY_SERVICE)
}

/// Parses a registration answer. The original registry answers `null` for a
/// required service without instances; we treat it as an empty list.
pub fn parse_instances(bytes: &[u8]) -> Result<Instances, serde_json::Error> {
    let raw: BTreeMap<String, Option<Vec<ServiceRecord>>> = serde_json::from_slice(bytes)?;
    Ok(raw
        .into_iter()
        .map(|(name, records)| (name, records.unwrap_or_default()))
        .collect())
}

fn check_name(name: &str) -> Result<(), RecordError> {
    if name.is_empty() {
        return Err(RecordError::EmptyName);
    }
    if name.len() > MAX_NAME {
        return Err(RecordError::LongName(name.len()));
    }
    if name
        .chars()
        .any(|c| c.is_whitespace() || c.is_control() || c == '/')
    {
        return Err(RecordError::BadName(name.to_owned()));
    }
    Ok(())
}

/// Checks that `addr` is `HOST:PORT` in the one spelling of its instance:
/// a port of 1-5 digits without sign or leading zero, 1-65535, and a host
/// that is a canonical IPv4 address, a canonical `[IPv6]` without zone that
/// is no IPv4-mapped address, or a DNS name in lower case.
/// Anything else is refused: a second spelling of an address would register
/// a second instance, and some spellings (`0127.0.0.1`, `0x7f000001`) are
/// read as other addresses by the system's resolver. The refusal of another
/// spelling of an address names its one spelling. What cannot be told
/// without DNS is not caught: `localhost:80` and `127.0.0.1:80` stay two
/// instances.
pub fn check_addr(addr: &str) -> Result<(), RecordError> {
    let bad_addr = || RecordError::BadAddr(addr.to_owned());
    let (host, port) = match addr.strip_prefix('[') {
        Some(rest) => {
            let (ip, port) = rest.split_once("]:").ok_or_else(bad_addr)?;
            (Host::V6(ip), port)
        }
        None => {
            let (host, port) = addr.rsplit_once(':').ok_or_else(bad_addr)?;
            (Host::Other(host), port)
        }
    };
    let port_ok = (1..=5).contains(&port.len())
        && port.bytes().all(|b| b.is_ascii_digit())
        && !port.starts_with('0')
        && port.parse::<u16>().is_ok();
    if !port_ok {
        return Err(RecordError::BadPort(addr.to_owned()));
    }
    let unspecified = match host {
        // In its canonical spelling (RFC 5952, as Rust writes it): `[::1]`,
        // not `[0:0::1]` or `[::0001]`.
        Host::V6(text) => match text.parse::<Ipv6Addr>() {
            // Sockets connect to it as to the IPv4 address itself.
            Ok(ip) if ip.to_ipv4_mapped().is_some() => {
                return Err(RecordError::Ipv4Mapped {
                    given: addr.to_owned(),
                    ipv4: format!("{}:{port}", ip.to_canonical()),
                });
            }
            Ok(ip) if ip.to_string() == text => ip.is_unspecified(),
            Ok(ip) => {
                return Err(RecordError::NotCanonical {
                    given: addr.to_owned(),
                    canonical: format!("[{ip}]:{port}"),
                });
            }
            Err(_) => return Err(bad_addr()),
        },
        Host::Other(host) if host.bytes().all(|b| b.is_ascii_digit() || b == b'.') => host
            .parse::<Ipv4Addr>()
            .map_err(|_| bad_addr())?
            .is_unspecified(),
        // DNS names are case-insensitive: `LocalHost` is `localhost`.
        Host::Other(host) if is_dns_name(host) && host.bytes().any(|b| b.is_ascii_uppercase()) => {
            return Err(RecordError::UpperCase {
                given: addr.to_owned(),
                lower: format!("{}:{port}", host.to_ascii_lowercase()),
            });
        }
        Host::Other(host) if is_dns_name(host) => false,
        Host::Other(_) => return Err(bad_addr()),
    };
    // `0.0.0.0` / `::` mean "every interface" to a listener, and nothing to
    // a client: a registered instance there would be unreachable.
    if unspecified {
        return Err(RecordError::Unspecified(addr.to_owned()));
    }
    Ok(())
}

/// The host part of an address, as written.
enum Host<'a> {
    /// Between brackets: must be an IPv6 address.
    V6(&'a str),
    /// An IPv4 address or a DNS name.
    Other(&'a str),
}

/// Whether `host` is a DNS name: labels of ASCII letters, digits and
/// hyphens (1-63 characters, no hyphen first or last), 253 characters at
/// most, no trailing dot, and a last label that is not a number (decimal
/// or `0x` hex: the resolver would read the name as an IPv4 address).
fn is_dns_name(host: &str) -> bool {
    let label_ok = |label: &str| {
        (1..=63).contains(&label.len())
            && label
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-')
            && !label.starts_with('-')
            && !label.ends_with('-')
    };
    let numeric = |label: &str| {
        let hex = label
            .strip_prefix("0x")
            .or_else(|| label.strip_prefix("0X"));
        match hex {
            Some(digits) => digits.bytes().all(|b| b.is_ascii_hexdigit()),
            None => label.bytes().all(|b| b.is_ascii_digit()),
        }
    };
    host.len() <= 253
        && host.split('.').all(label_ok)
        && host.rsplit('.').next().is_some_and(|top| !numeric(top))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(name: &str, addr: &str) -> ServiceRecord {
        ServiceRecord::new(name, addr, vec![])
    }

    #[test]
    fn writes_go_field_names() {
        let json =
            serde_json::to_string(&ServiceRecord::new("visit", "h:1", vec!["log".into()])).unwrap();
        assert_eq!(
            json,
            r#"{"Name":"visit","Addr":"h:1","RequiredServices":["log"]}"#
        );
    }

    #[test]
    fn reads_other_spellings_and_null_required() {
        for json in [
            r#"{"name":"a","addr":"h:1","requiredServices":null}"#,
            r#"{"NAME":"a","ADDR":"h:1","required_services":[]}"#,
            r#"{"Name":"a","Addr":"h:1"}"#,
        ] {
            let r: ServiceRecord = serde_json::from_str(json).unwrap();
            assert_eq!(r, record("a", "h:1"), "{json}");
        }
    }

    #[test]
    fn validates_names_and_addresses() {
        assert!(record("log", "127.0.0.1:20002").validate().is_ok());
        assert!(record("log", "[::1]:80").validate().is_ok());
        assert_eq!(record("", "h:1").validate(), Err(RecordError::EmptyName));
        assert!(matches!(
            record("a b", "h:1").validate(),
            Err(RecordError::BadName(_))
        ));
        assert!(matches!(
            record("a/b", "h:1").validate(),
            Err(RecordError::BadName(_))
        ));
        assert!(matches!(
            record("*", "h:1").validate(),
            Err(RecordError::ReservedName(_))
        ));
        for bad in ["h", ":1", "a/b:1", "h :1"] {
            assert!(
                matches!(record("a", bad).validate(), Err(RecordError::BadAddr(_))),
                "{bad}"
            );
        }
        for unspecified in ["0.0.0.0:20003", "[::]:20003"] {
            assert!(
                matches!(
                    record("a", unspecified).validate(),
                    Err(RecordError::Unspecified(_))
                ),
                "{unspecified}"
            );
        }
        for bad in ["h:0", "h:", "h:65536", "h:x", "0.0.0.0:0"] {
            assert!(
                matches!(record("a", bad).validate(), Err(RecordError::BadPort(_))),
                "{bad}"
            );
        }
        let bad_required = ServiceRecord::new("a", "h:1", vec!["".into()]);
        assert!(matches!(
            bad_required.validate(),
            Err(RecordError::BadRequired(_))
        ));
    }

    #[test]
    fn accepts_an_address_only_in_its_one_spelling() {
        for good in [
            "127.0.0.62:45110",
            "127.0.0.1:1",
            "10.0.0.5:65535",
            "[::1]:80",
            "[2001:db8::1]:8080",
            "h:1",
            "localhost:20000",
            "log-1.svc.example:80",
            "a1.b-2.c3d:443",
            "x0:1",
        ] {
            assert_eq!(record("a", good).validate(), Ok(()), "{good}");
        }
        let long_label = format!("{}.example:80", "a".repeat(64));
        let long_name = format!("{}.example:80", vec!["a".repeat(63); 4].join("."));
        for bad in [
            "127.0.0.62:45110:45110",
            "[127.0.0.62:45110",
            "[127.0.0.62]:45110",
            "0127.0.0.62:45110",
            "127.0.0.62.:45110",
            "127.0.0.62%25:45110",
            "127.0.0.256:80",
            "127.1:80",
            "1.2.3.4.5:80",
            "0x7f000001:80",
            "0x7f.0.0.1:80",
            "0X7F.0x0.0x0.0x1:80",
            "host.123:80",
            "host.:80",
            ".host:80",
            "a..b:80",
            "-host:80",
            "host-:80",
            "ho_st:80",
            "hôst:80",
            "::1:80",
            "[::1%eth0]:80",
            "[fe80::1%251]:80",
            "[::1]x:80",
            "[]:80",
            "[h]:80",
            long_label.as_str(),
            long_name.as_str(),
        ] {
            assert!(
                matches!(record("a", bad).validate(), Err(RecordError::BadAddr(_))),
                "{bad}: {:?}",
                record("a", bad).validate()
            );
        }
        for (given, canonical) in [
            ("[0:0::1]:80", "[::1]:80"),
            ("[::0001]:80", "[::1]:80"),
            ("[2001:DB8::1]:80", "[2001:db8::1]:80"),
            ("[2001:db8:0:0:0:0:0:1]:443", "[2001:db8::1]:443"),
        ] {
            let refused = record("a", given).validate().unwrap_err();
            assert_eq!(
                refused,
                RecordError::NotCanonical {
                    given: given.into(),
                    canonical: canonical.into()
                }
            );
            assert!(refused.to_string().contains(canonical), "{refused}");
        }
        for bad in [
            "127.0.0.62:045110",
            "127.0.0.62:+45110",
            "127.0.0.62:-1",
            "127.0.0.62:0080",
            "127.0.0.62:123456",
            "127.0.0.62: 80",
            "[::1]:080",
            "[::1]:80:80",
        ] {
            assert!(
                matches!(record("a", bad).validate(), Err(RecordError::BadPort(_))),
                "{bad}: {:?}",
                record("a", bad).validate()
            );
        }
    }

    #[test]
    fn an_ipv4_address_spelled_as_ipv6_or_a_name_in_upper_case_is_refused() {
        for (given, one) in [
            ("[::ffff:127.0.0.9]:32904", "127.0.0.9:32904"),
            ("[::ffff:7f00:9]:32904", "127.0.0.9:32904"),
            ("[::FFFF:127.0.0.9]:32904", "127.0.0.9:32904"),
            ("[::ffff:0.0.0.0]:80", "0.0.0.0:80"),
        ] {
            let refused = record("a", given).validate().unwrap_err();
            assert_eq!(
                refused,
                RecordError::Ipv4Mapped {
                    given: given.into(),
                    ipv4: one.into()
                }
            );
            assert!(refused.to_string().contains(one), "{refused}");
        }
        for (given, one) in [
            ("LocalHost:32904", "localhost:32904"),
            ("LOCALHOST:32904", "localhost:32904"),
            ("Log-1.Svc.example:80", "log-1.svc.example:80"),
            ("x0X1:1", "x0x1:1"),
        ] {
            let refused = record("a", given).validate().unwrap_err();
            assert_eq!(
                refused,
                RecordError::UpperCase {
                    given: given.into(),
                    lower: one.into()
                }
            );
            assert!(refused.to_string().contains(one), "{refused}");
        }
        // Not a DNS name in any case: refused as before, not as upper case.
        assert!(matches!(
            record("a", "0X7F.0x0.0x0.0x1:80").validate(),
            Err(RecordError::BadAddr(_))
        ));
    }

    #[test]
    fn field_names_are_read_in_any_case_as_go_does() {
        let wanted = ServiceRecord::new("ci", "127.0.0.9:32902", vec!["x".into()]);
        for json in [
            r#"{"Name":"ci","Addr":"127.0.0.9:32902","RequiredSERVICES":["x"]}"#,
            r#"{"nAmE":"ci","aDDR":"127.0.0.9:32902","requiredservices":["x"]}"#,
            r#"{"NAME":"ci","ADDR":"127.0.0.9:32902","REQUIREDSERVICES":["x"]}"#,
            // Go folds `ſ` (U+017F) to `S`, and reads escaped keys.
            r#"{"Name":"ci","Addr":"127.0.0.9:32902","Requiredſervices":["x"]}"#,
            r#"{"N\u0061me":"ci","Addr":"127.0.0.9:32902","RequiredServices":["x"]}"#,
            // A field given twice takes the last value; others are skipped.
            r#"{"name":"no","Name":"ci","Addr":"127.0.0.9:32902","RequiredServices":["x"],"Extra":{"a":[1]}}"#,
        ] {
            let read: ServiceRecord = serde_json::from_str(json).unwrap();
            assert_eq!(read, wanted, "{json}");
        }
        // No folding past Go's: `ß` is not `ss`, a `_` is no gap.
        for json in [
            r#"{"Name":"ci","Addr":"127.0.0.9:32902","RequiredServiceß":["x"]}"#,
            r#"{"Name":"ci","Addr":"127.0.0.9:32902","Required_Services":["x"]}"#,
        ] {
            let read: ServiceRecord = serde_json::from_str(json).unwrap();
            assert!(read.required_services.is_empty(), "{json}");
        }
        let missing = serde_json::from_str::<ServiceRecord>(r#"{"Addr":"h:1"}"#).unwrap_err();
        assert!(missing.to_string().contains("`Name`"), "{missing}");
    }

    #[test]
    fn a_record_holds_bounded_names_and_lists() {
        let name = |n: usize| "n".repeat(n);
        assert_eq!(record(&name(MAX_NAME), "h:1").validate(), Ok(()));
        let long = record(&name(MAX_NAME + 1), "h:1").validate().unwrap_err();
        assert_eq!(long, RecordError::LongName(MAX_NAME + 1));
        assert!(long.to_string().contains("253"), "{long}");
        // Counted in bytes, not characters.
        let wide = "é".repeat(MAX_NAME / 2 + 1);
        assert!(matches!(
            record(&wide, "h:1").validate(),
            Err(RecordError::LongName(_))
        ));
        let long_entry = ServiceRecord::new("a", "h:1", vec![name(MAX_NAME + 1)]);
        assert!(matches!(
            long_entry.validate(),
            Err(RecordError::BadRequired(_))
        ));

        let listing = |count: usize, len: usize| {
            ServiceRecord::new("a", "h:1", (0..count).map(|_| name(len)).collect())
        };
        assert_eq!(listing(MAX_REQUIRED, 64).validate(), Ok(()));
        let many = listing(MAX_REQUIRED + 1, 1).validate().unwrap_err();
        assert_eq!(many, RecordError::ManyRequired(MAX_REQUIRED + 1));
        assert!(many.to_string().contains("256"), "{many}");
        let per = MAX_REQUIRED_BYTES / 100;
        assert_eq!(listing(100, per).validate(), Ok(()));
        let total = listing(100, per + 1).validate().unwrap_err();
        assert_eq!(total, RecordError::LongRequired(100 * (per + 1)));
        assert!(total.to_string().contains("16384"), "{total}");
    }

    #[test]
    fn a_record_is_read_only_from_an_object() {
        for json in [
            r#"["arr","127.0.0.62:45110",["svc"]]"#,
            "[]",
            r#""arr""#,
            "7",
            "null",
        ] {
            let error = serde_json::from_str::<ServiceRecord>(json).unwrap_err();
            assert!(
                error.to_string().contains("a record is a JSON object"),
                "{json}: {error}"
            );
        }
        // Inside a registration answer too.
        assert!(parse_instances(br#"{"svc":[["svc","127.0.0.62:45110",[]]]}"#).is_err());
    }

    #[test]
    fn requires_by_name_or_wildcard() {
        let visit = ServiceRecord::new("visit", "h:1", vec!["log".into()]);
        assert!(visit.requires("log"));
        assert!(!visit.requires("visit"));
        let gateway = ServiceRecord::new("gateway", "h:2", vec![EVERY_SERVICE.into()]);
        assert!(gateway.requires("anything"));
    }

    #[test]
    fn parses_null_instances_as_empty() {
        let answer = parse_instances(
            br#"{"log":null,"visit":[{"Name":"visit","Addr":"h:1","RequiredServices":null}]}"#,
        )
        .unwrap();
        assert_eq!(answer["log"], vec![]);
        assert_eq!(answer["visit"], vec![record("visit", "h:1")]);
    }

    mod properties {
        use proptest::prelude::*;

        use super::super::*;

        proptest! {
            /// Whatever a client sends, decoding and validating either
            /// succeed or say why: never a panic.
            #[test]
            fn any_body_is_decoded_or_refused(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
                if let Ok(record) = serde_json::from_slice::<ServiceRecord>(&bytes) {
                    let _ = record.validate();
                }
            }

            /// A record that validates can be called: its address makes a
            /// URL, and its name a path segment.
            #[test]
            fn a_valid_record_is_reachable(name in "\\PC{0,12}", host in "\\PC{0,16}", port in any::<u32>()) {
                let record = ServiceRecord::new(name, format!("{host}:{port}"), vec![]);
                if record.validate().is_ok() {
                    let url = format!("http://{}/services/{}", record.addr, record.name);
                    prop_assert!(url.parse::<http::Uri>().is_ok(), "{url}");
                }
            }

            /// An IP address that validates is in its one spelling: it
            /// reads back as a socket address written exactly as it was, so
            /// no second spelling of an instance (nor one the resolver
            /// reads as another address) gets through.
            #[test]
            fn a_valid_ip_address_is_canonical(
                host in prop_oneof![
                    proptest::collection::vec("0?[0-9]{1,3}", 1..6)
                        .prop_map(|octets| octets.join(".")),
                    proptest::collection::vec("[0-9a-fA-F]{0,5}", 2..10)
                        .prop_map(|groups| format!("[{}]", groups.join(":"))),
                ],
                port in "[-+0]?[0-9]{1,6}",
            ) {
                let addr = format!("{host}:{port}");
                if check_addr(&addr).is_ok() {
                    let parsed = addr.parse::<std::net::SocketAddr>();
                    prop_assert!(parsed.is_ok(), "{addr}");
                    prop_assert_eq!(parsed.unwrap().to_string(), addr);
                }
            }

            /// What we write, we read back the same.
            #[test]
            fn valid_records_round_trip(
                name in "[a-z][a-z0-9-]{0,15}",
                port in 1u16..,
                required in proptest::collection::vec("[a-z][a-z0-9]{0,7}|\\*", 0..4),
            ) {
                let record = ServiceRecord::new(name, format!("127.0.0.1:{port}"), required);
                prop_assert!(record.validate().is_ok());
                let json = serde_json::to_vec(&record).unwrap();
                prop_assert_eq!(serde_json::from_slice::<ServiceRecord>(&json).unwrap(), record);
            }
        }
    }
}
