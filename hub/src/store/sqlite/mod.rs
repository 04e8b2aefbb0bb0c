//! The SQLite engine: its connections ([`driver`]), the upgrades of files older than
//! schema 7 ([`upgrade`]) and online copies for backups ([`snapshot`]). Everything else
//! is engine-neutral: [`super::SqlStore`] over a [`super::Database`].

pub mod driver;
pub mod probe;
pub mod snapshot;
pub mod upgrade;

pub use upgrade::SCHEMA;
