//! Hostile-network testing for the sync: a UDP fault proxy between agents and the hub
//! (a pure seeded [`FaultPlan`] driven by the [`FaultProxy`] IO thread) and the
//! total-queue check that counts lost, duplicated and unexpected receipts.

pub mod plan;
pub mod proxy;
pub mod total_queue;

pub use plan::{Direction, DirectionCounters, DirectionFaults, FaultCounters, FaultPlan, Release};
pub use proxy::FaultProxy;
pub use total_queue::{ReceiptKey, TotalQueue};

#[cfg(test)]
mod tests;
