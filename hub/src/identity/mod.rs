//! The identity graph (pure).
