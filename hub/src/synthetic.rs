//! Deterministic, realistic-looking events for the benchmark, tests and demos: receipts
//! of 3–15 lines, most of them carded over a fixed pool of loyalty cards.

use till360_shared::card::with_check_digit;
use till360_shared::{
    AgentId, CardNumber, Currency, Event, EventKind, Receipt, ReceiptLine, Timestamp,
};

const PRODUCTS: &[(&str, i64)] = &[
    ("Milk 1l", 119),
    ("Bread", 249),
    ("Butter 250g", 229),
    ("Coffee 500g", 699),
    ("Apples 1kg", 299),
    ("Cheese", 389),
    ("Pasta 500g", 129),
    ("Tomatoes", 199),
    ("Yoghurt", 59),
    ("Orange juice", 189),
    ("Chocolate", 149),
    ("Detergent", 549),
];

/// 2026-01-05T08:00:00Z: a Monday morning.
const START_MS: i64 = 1_767_600_000_000;

pub struct Generator {
    state: u64,
    cards: Vec<CardNumber>,
    carded_percent: u64,
}

impl Generator {
    /// `card_count` loyalty cards (prefix 2401), `carded_percent` of receipts carded.
    pub fn new(seed: u64, card_count: usize, carded_percent: u64) -> Self {
        let cards = (0..card_count)
            .filter_map(|i| with_check_digit(&format!("2401{i:08}")).ok())
            .filter_map(|code| CardNumber::parse(&code).ok())
            .collect();
        Self {
            state: seed | 1,
            cards,
            carded_percent,
        }
    }

    pub fn cards(&self) -> &[CardNumber] {
        &self.cards
    }

    /// xorshift64*: stable across platforms and releases, unlike a library RNG.
    fn next(&mut self) -> u64 {
        self.state ^= self.state >> 12;
        self.state ^= self.state << 25;
        self.state ^= self.state >> 27;
        self.state.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }

    /// A receipt event with `seq` from `agent`; times advance with `seq`.
    pub fn receipt(&mut self, agent: &AgentId, seq: u64) -> Event {
        let line_count = 3 + self.below(13) as usize;
        let mut lines = Vec::with_capacity(line_count);
        for _ in 0..line_count {
            let (name, unit) = PRODUCTS[self.below(PRODUCTS.len() as u64) as usize];
            let qty = 1 + self.below(3) as i64;
            lines.push(ReceiptLine {
                description: name.to_string(),
                sku: Some(format!("400{:010}", unit * 7 + qty)),
                quantity_milli: qty * 1000,
                unit_cents: Some(unit),
                amount_cents: unit * qty,
                discount: false,
            });
        }
        let card = if !self.cards.is_empty() && self.below(100) < self.carded_percent {
            let i = self.below(self.cards.len() as u64) as usize;
            Some(self.cards[i].clone())
        } else {
            None
        };
        let at = Timestamp::from_unix_ms(
            START_MS + seq as i64 * 90_000 + self.below(60_000) as i64,
            60,
        );
        let total_cents = lines.iter().map(|l| l.amount_cents).sum();
        Event {
            agent: agent.clone(),
            seq,
            recorded_at: at,
            kind: EventKind::Receipt(Receipt {
                receipt_no: Some(format!("{}-{seq:06}", agent.till)),
                printed_at: Some(at),
                completed_at: at,
                card_last4: card.as_ref().map(|c| c.last4().to_string()),
                card,
                lines,
                total_cents,
                currency: Currency::EUR,
                unbalanced: false,
                unmatched_lines: 0,
            }),
        }
    }

    /// A card scan event with `seq` from `agent` (the card pool is not empty).
    fn card_scan(&mut self, agent: &AgentId, seq: u64) -> Event {
        let i = self.below(self.cards.len() as u64) as usize;
        let card = self.cards[i].clone();
        Event {
            agent: agent.clone(),
            seq,
            recorded_at: Timestamp::from_unix_ms(START_MS + seq as i64 * 90_000, 60),
            kind: EventKind::CardScanned { card },
        }
    }

    /// `count` events with seqs `first_seq..`: mostly receipts, some bare card scans.
    pub fn events(&mut self, agent: &AgentId, first_seq: u64, count: usize) -> Vec<Event> {
        (first_seq..first_seq + count as u64)
            .map(|seq| {
                if !self.cards.is_empty() && self.below(10) == 0 {
                    self.card_scan(agent, seq)
                } else {
                    self.receipt(agent, seq)
                }
            })
            .collect()
    }
}
