//! Simulated till hardware on virtual serial ports: the POS printing receipts, the
//! receipt printer answering status requests, the loyalty-card scanner, and a whole
//! morning of shopping. Deterministic by seed, so tests can compare what the hub got
//! with what was printed.

pub mod backoffice;
pub mod escpos;
pub mod morning;
pub mod pos;
pub mod printer;
pub mod pty;
pub mod rng;
pub mod scanner;
pub mod style;

#[cfg(test)]
mod tests;

pub use backoffice::BackOffice;
pub use morning::{CardExpectation, Morning, MorningPlan, Scan, StoreSetup, Visit};
pub use pos::{play_receipt, ExpectedReceipt, PlayError, PosSimulator, SimReceipt};
pub use printer::{PrinterModel, PrinterSimulator};
pub use pty::{PtyError, VirtualPort};
pub use rng::SimRng;
pub use scanner::{ScannerSimulator, Suffix};
pub use style::{BasketItem, Quantity, ReceiptStyle};
