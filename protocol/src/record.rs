//! The service record: what a service instance tells the registry about
//! itself, and what the registry tells dependents about it.
//!
//! On the wire it is the Go struct of the original, `{"Name": .., "Addr": ..,
//! "RequiredServices": [..]}`. Go decodes field names case-insensitively, so we
//! accept the usual other spellings on input and always write the Go ones.

use std::collections::BTreeMap;

use serde::{Deserialize, Deserializer, Serialize};

/// A `RequiredServices` entry meaning "every service" (a gateway needs it).
pub const EVERY_SERVICE: &str = "*";

/// The registration answer: each required service name mapped to its
/// current instances.
pub type Instances = BTreeMap<String, Vec<ServiceRecord>>;

/// One instance of a service. An instance is identified by (`name`, `addr`).
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct ServiceRecord {
    #[serde(rename = "Name", alias = "name", alias = "NAME")]
    pub name: String,
    #[serde(rename = "Addr", alias = "addr", alias = "ADDR")]
    pub addr: String,
    #[serde(
        rename = "RequiredServices",
        alias = "requiredServices",
        alias = "required_services",
        alias = "requiredservices",
        alias = "REQUIREDSERVICES",
        default,
        deserialize_with = "null_as_empty"
    )]
    pub required_services: Vec<String>,
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
    #[error("Addr {0:?} is not host:port")]
    BadAddr(String),
    #[error("Addr {0:?} has no valid port (1-65535)")]
    BadPort(String),
    #[error("RequiredServices entry {0:?} is not a service name")]
    BadRequired(String),
}

impl ServiceRecord {
    pub fn new(name: impl Into<String>, addr: impl Into<String>, required: Vec<String>) -> Self {
        Self {
            name: name.into(),
            addr: addr.into(),
            required_services: required,
        }
    }

    /// Checks what the registry relies on: a name usable in a URL path and an
    /// address that `http://{addr}/...` can reach.
    pub fn validate(&self) -> Result<(), RecordError> {
        check_name(&self.name)?;
        if self.name == EVERY_SERVICE {
            return Err(RecordError::ReservedName(self.name.clone()));
        }
        check_addr(&self.addr)?;
        for required in &self.required_services {
            if required != EVERY_SERVICE && check_name(required).is_err() {
                return Err(RecordError::BadRequired(required.clone()));
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

fn null_as_empty<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Vec<String>, D::Error> {
    Ok(Option::<Vec<String>>::deserialize(deserializer)?.unwrap_or_default())
}

fn check_name(name: &str) -> Result<(), RecordError> {
    if name.is_empty() {
        return Err(RecordError::EmptyName);
    }
    if name
        .chars()
        .any(|c| c.is_whitespace() || c.is_control() || c == '/')
    {
        return Err(RecordError::BadName(name.to_owned()));
    }
    Ok(())
}

fn check_addr(addr: &str) -> Result<(), RecordError> {
    let bad_addr = || RecordError::BadAddr(addr.to_owned());
    let (host, port) = addr.rsplit_once(':').ok_or_else(bad_addr)?;
    // Anything that would change the meaning of `http://{addr}/path`.
    let breaks_url =
        |c: char| c.is_whitespace() || c.is_control() || matches!(c, '/' | '?' | '#' | '@' | '\\');
    if host.is_empty() || host.chars().any(breaks_url) {
        return Err(bad_addr());
    }
    match port.parse::<u16>() {
        Ok(p) if p > 0 => Ok(()),
        _ => Err(RecordError::BadPort(addr.to_owned())),
    }
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
        for bad in ["h:0", "h:", "h:65536", "h:x"] {
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
