//! Realistic synthetic shoppers for back-tests. (Being written.)
