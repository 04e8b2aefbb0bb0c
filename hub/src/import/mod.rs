//! Imports: customers, orders, products.
