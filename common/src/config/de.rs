//! Serde for the config shapes derives cannot express: `starting_offsets` in its four forms,
//! socket addresses (and `"off"`), and Kafka property values. Errors are raised inside the value
//! they concern, so `serde_path_to_error` names the full key, down to a partition number.

use std::collections::BTreeMap;
use std::fmt;
use std::net::SocketAddr;

use serde::de::{self, DeserializeSeed, Deserializer, MapAccess, Visitor};
use serde::ser::{SerializeMap, Serializer};
use serde::{Deserialize, Serialize};

use super::model::StartingOffsets;

const STARTING_FORMS: &str =
    r#""earliest", "latest", { timestamp_ms = ... } or { offsets = { topic = { 0 = 42 } } }"#;

impl Serialize for StartingOffsets {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        match self {
            StartingOffsets::Earliest => serializer.serialize_str("earliest"),
            StartingOffsets::Latest => serializer.serialize_str("latest"),
            StartingOffsets::Timestamp { timestamp_ms } => {
                let mut map = serializer.serialize_map(Some(1))?;
                map.serialize_entry("timestamp_ms", timestamp_ms)?;
                map.end()
            }
            StartingOffsets::Offsets { offsets } => {
                let mut map = serializer.serialize_map(Some(1))?;
                map.serialize_entry("offsets", &TopicsOut(offsets))?;
                map.end()
            }
        }
    }
}

/// Partition numbers become string keys, as TOML wants.
struct TopicsOut<'a>(&'a BTreeMap<String, BTreeMap<i32, i64>>);
struct PartitionsOut<'a>(&'a BTreeMap<i32, i64>);

impl Serialize for TopicsOut<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_map(self.0.iter().map(|(topic, parts)| (topic, PartitionsOut(parts))))
    }
}

impl Serialize for PartitionsOut<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer
            .collect_map(self.0.iter().map(|(partition, offset)| (partition.to_string(), offset)))
    }
}

impl<'de> Deserialize<'de> for StartingOffsets {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_any(StartingVisitor)
    }
}

struct StartingVisitor;

impl<'de> Visitor<'de> for StartingVisitor {
    type Value = StartingOffsets;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str(STARTING_FORMS)
    }

    fn visit_str<E: de::Error>(self, text: &str) -> Result<StartingOffsets, E> {
        match text {
            "earliest" => Ok(StartingOffsets::Earliest),
            "latest" => Ok(StartingOffsets::Latest),
            _ => {
                Err(E::custom(format!("{text:?} is not a starting position; use {STARTING_FORMS}")))
            }
        }
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<StartingOffsets, A::Error> {
        let one_of = || de::Error::custom("give exactly one of timestamp_ms or offsets");
        let key: String = map.next_key()?.ok_or_else(one_of)?;
        let starting = match key.as_str() {
            "timestamp_ms" => StartingOffsets::Timestamp { timestamp_ms: map.next_value()? },
            "offsets" => {
                let Topics(offsets) = map.next_value()?;
                StartingOffsets::Offsets { offsets }
            }
            // Refused inside the value, so the error names `...starting_offsets.<key>`.
            _ => {
                return map
                    .next_value_seed(Refuse("unknown key; expected timestamp_ms or offsets"));
            }
        };
        match map.next_key::<String>()? {
            Some(_) => Err(one_of()),
            None => Ok(starting),
        }
    }
}

/// `{ topic = { "0" = 42 } }`.
struct Topics(BTreeMap<String, BTreeMap<i32, i64>>);

impl<'de> Deserialize<'de> for Topics {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let topics = BTreeMap::<String, Partitions>::deserialize(deserializer)?;
        Ok(Topics(topics.into_iter().map(|(topic, Partitions(parts))| (topic, parts)).collect()))
    }
}

struct Partitions(BTreeMap<i32, i64>);

impl<'de> Deserialize<'de> for Partitions {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct PartitionsVisitor;
        impl<'de> Visitor<'de> for PartitionsVisitor {
            type Value = Partitions;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a table of partition = offset, like { 0 = 42, 1 = 7 }")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Partitions, A::Error> {
                let mut parts = BTreeMap::new();
                while let Some(key) = map.next_key::<String>()? {
                    let offset = map.next_value_seed(OffsetOf(&key))?;
                    parts.insert(key.parse().expect("checked by OffsetOf"), offset);
                }
                Ok(Partitions(parts))
            }
        }
        deserializer.deserialize_map(PartitionsVisitor)
    }
}

/// Reads one partition's offset and checks its key there, so an error names `...topic.<key>`.
struct OffsetOf<'a>(&'a str);

impl<'de> DeserializeSeed<'de> for OffsetOf<'_> {
    type Value = i64;

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<i64, D::Error> {
        if self.0.parse::<i32>().is_err() {
            return Err(de::Error::custom(format!(
                "{:?} is not a partition number; write partitions as integers, like 0 = 42",
                self.0
            )));
        }
        i64::deserialize(deserializer)
    }
}

/// Fails with its message for whatever value it is given.
struct Refuse(&'static str);

impl<'de> DeserializeSeed<'de> for Refuse {
    type Value = StartingOffsets;

    fn deserialize<D: Deserializer<'de>>(self, _: D) -> Result<StartingOffsets, D::Error> {
        Err(de::Error::custom(self.0))
    }
}

/// `[source.kafka]` / `[sink.kafka]`: librdkafka takes every property as a string, so integers,
/// floats and booleans written in TOML are accepted and kept as their text.
pub(super) fn kafka_properties<'de, D: Deserializer<'de>>(
    deserializer: D,
) -> Result<BTreeMap<String, String>, D::Error> {
    struct Property(String);
    impl<'de> Deserialize<'de> for Property {
        fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
            struct PropertyVisitor;
            impl Visitor<'_> for PropertyVisitor {
                type Value = Property;
                fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                    f.write_str("a string, number or boolean")
                }
                fn visit_str<E: de::Error>(self, v: &str) -> Result<Property, E> {
                    Ok(Property(v.to_owned()))
                }
                fn visit_i64<E: de::Error>(self, v: i64) -> Result<Property, E> {
                    Ok(Property(v.to_string()))
                }
                fn visit_u64<E: de::Error>(self, v: u64) -> Result<Property, E> {
                    Ok(Property(v.to_string()))
                }
                fn visit_f64<E: de::Error>(self, v: f64) -> Result<Property, E> {
                    Ok(Property(v.to_string()))
                }
                fn visit_bool<E: de::Error>(self, v: bool) -> Result<Property, E> {
                    Ok(Property(v.to_string()))
                }
            }
            deserializer.deserialize_any(PropertyVisitor)
        }
    }
    let properties = BTreeMap::<String, Property>::deserialize(deserializer)?;
    Ok(properties.into_iter().map(|(key, Property(value))| (key, value)).collect())
}

fn parse_addr<E: de::Error>(text: &str, or_off: &str) -> Result<SocketAddr, E> {
    text.parse().map_err(|_| {
        E::custom(format!("{text:?} is not an address; write it like \"127.0.0.1:7070\"{or_off}"))
    })
}

/// A `SocketAddr` written as `"host:port"`, with an error that shows the value.
pub(super) mod socket_addr {
    use super::*;

    pub fn serialize<S: Serializer>(addr: &SocketAddr, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(addr)
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(deserializer: D) -> Result<SocketAddr, D::Error> {
        parse_addr(&String::deserialize(deserializer)?, "")
    }
}

/// An optional `SocketAddr`: `"off"` or `""` is `None`, and `None` is written `"off"`.
pub(super) mod optional_socket_addr {
    use super::*;

    pub fn serialize<S: Serializer>(
        addr: &Option<SocketAddr>,
        serializer: S,
    ) -> Result<S::Ok, S::Error> {
        match addr {
            Some(addr) => serializer.collect_str(addr),
            None => serializer.serialize_str("off"),
        }
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(
        deserializer: D,
    ) -> Result<Option<SocketAddr>, D::Error> {
        match String::deserialize(deserializer)?.as_str() {
            "" | "off" => Ok(None),
            text => parse_addr(text, r#", or "off""#).map(Some),
        }
    }
}
