//! The PostgreSQL statements of `store::imports`: a CRM chunk's identifiers are looked up
//! in one statement, as text arrays through `unnest` (one plan, one round trip, where
//! `IN (…)` lists would be planned again for each of their 500-value parts).
//!
//! Each lookup is a scalar subquery per array element, so it runs as one index probe per
//! identifier whatever the planner believes of the tables' sizes: inside the import's
//! one transaction the tables grow without statistics, and `= ANY (array)`, a semi-join
//! or an `EXISTS` could be planned as a scan of the whole table for each chunk (measured:
//! a 5,000-id `= ANY` against 30,000 fresh profiles, a sequential scan, took 80 s).

/// Run first in the import's transaction: no JIT compilation (the lookups' estimated
/// cost crosses `jit_above_cost`, and compiling took longer than running them).
pub const TRANSACTION_SETTINGS: &str = "SET LOCAL jit = off";

/// Of the identifiers `?1` (kinds) / `?2` (values), those the database knows: linked,
/// held by a profile, blocked, or (cards) flagged or cleared as suspicious.
pub const KNOWN_IDENTIFIERS: &str = "SELECT u.kind, u.value
     FROM unnest(CAST(CAST(?1 AS TEXT) AS TEXT[]), CAST(CAST(?2 AS TEXT) AS TEXT[]))
         AS u(kind, value)
     WHERE (SELECT 1 FROM identifiers i WHERE i.kind = u.kind AND i.value = u.value)
            IS NOT NULL
        OR (SELECT 1 FROM identity_links l WHERE l.kind = u.kind AND l.value = u.value
            LIMIT 1) IS NOT NULL
        OR (SELECT 1 FROM blocked_identifiers b WHERE b.kind = u.kind AND b.value = u.value)
            IS NOT NULL
        OR (u.kind = 'card'
            AND (SELECT 1 FROM suspicious_cards s WHERE s.card = u.value) IS NOT NULL)";

/// Of the profile ids `?1`, those taken.
pub const TAKEN_PROFILES: &str = "SELECT u.id
     FROM unnest(CAST(CAST(?1 AS TEXT) AS TEXT[])) AS u(id)
     WHERE (SELECT 1 FROM profiles p WHERE p.profile_id = u.id) IS NOT NULL";
