//! Pareto/NBD (Schmittlein, Morrison & Colombo 1987). (Being written.)
