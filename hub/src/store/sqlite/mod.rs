//! The SQLite engine: its connections ([`driver`]) and the upgrades of files older than
//! schema 7 ([`upgrade`]). Everything else is engine-neutral: [`super::SqlStore`] over a
//! [`super::Database`].

pub mod driver;
pub mod probe;
pub mod upgrade;

pub use upgrade::SCHEMA;
