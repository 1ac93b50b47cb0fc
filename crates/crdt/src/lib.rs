//! Delta-state CRDTs ordered by hybrid logical clocks, and the bounded anti-entropy state machine that spreads them.
