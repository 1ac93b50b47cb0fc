//! Per-destination route table.
