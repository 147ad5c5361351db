//! The `weir.v1` protobuf package, generated at build time from `proto/weir/v1/*.proto`.
//!
//! Only conversion code (`TryFrom` impls in `weir-common`) touches these types; domain code uses
//! its own. Every message stored in etcd carries a `format_version`, so a newer Weir reads an
//! older checkpoint (Spark's serialized checkpoints cannot survive an upgrade; ours must).

pub mod v1 {
    include!(concat!(env!("OUT_DIR"), "/weir.v1.rs"));
}
