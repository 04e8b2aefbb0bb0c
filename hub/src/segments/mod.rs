//! Segments defined in the hub config (pure evaluation).
