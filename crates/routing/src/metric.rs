//! Route metric: B.A.T.M.A.N.'s transmit quality (TQ) carried in the log domain.
//!
//! B.A.T.M.A.N. IV multiplies TQs along a path (`tq_path = tq_link * tq_rest / 255`) and
//! multiplies in `(255 - hop_penalty) / 255` per hop. Eight-bit products reach zero after a
//! few dozen hops, which caps the mesh diameter. We carry `cost = -ln(tq / 255) * 1024`
//! instead: products become sums, a 200-hop grid still has distinct costs, and the path TQ
//! shown to operators is `255 * exp(-cost / 1024)`, the same number batman-adv would show.
//! Costs are strictly increasing along a path (every hop adds the hop penalty), which is what
//! the feasibility condition in `table.rs` needs.

use wire::COST_INFINITE;

/// Fixed-point scale of the log-domain cost.
pub const COST_SCALE: f64 = 1024.0;

/// Largest finite path cost; sums saturate here so that they never become "infinite".
pub const COST_MAX_FINITE: u32 = COST_INFINITE - 1;

/// Cost of a TQ value alone (no hop penalty); `tq == 0` is unusable.
pub fn tq_to_cost(tq: u8) -> u32 {
    if tq == 0 {
        return COST_INFINITE;
    }
    let cost = -(f64::from(tq) / 255.0).ln() * COST_SCALE;
    // ln(1/255) * 1024 is about 5674, well inside u32.
    cost.round() as u32
}

/// TQ on the 0..255 scale of a path cost.
pub fn cost_to_tq(cost: u32) -> u8 {
    if cost == COST_INFINITE {
        return 0;
    }
    let tq = 255.0 * (-f64::from(cost) / COST_SCALE).exp();
    tq.round().clamp(0.0, 255.0) as u8
}

/// Adds two costs; infinite stays infinite and finite sums saturate below infinity.
pub fn add_costs(a: u32, b: u32) -> u32 {
    if a == COST_INFINITE || b == COST_INFINITE {
        COST_INFINITE
    } else {
        a.saturating_add(b).min(COST_MAX_FINITE)
    }
}

/// Precomputed cost of one hop over a link of each TQ, hop penalty included.
#[derive(Debug, Clone)]
pub struct LinkCosts {
    by_tq: [u32; 256],
}

impl LinkCosts {
    /// Precomputes the 256 link costs for `hop_penalty` (on the 0..255 TQ scale).
    pub fn new(hop_penalty: u8) -> LinkCosts {
        let penalty = tq_to_cost(u8::MAX - hop_penalty.min(u8::MAX - 1));
        // With hop_penalty 0 the penalty would be 0 and costs would not grow along a path
        // over perfect links; one unit keeps them strictly increasing.
        let penalty = penalty.max(1);
        let mut by_tq = [COST_INFINITE; 256];
        for (tq, cost) in by_tq.iter_mut().enumerate().skip(1) {
            *cost = add_costs(tq_to_cost(tq as u8), penalty);
        }
        LinkCosts { by_tq }
    }

    /// Cost of one hop over a link of quality `tq`.
    pub fn hop(&self, tq: u8) -> u32 {
        self.by_tq[usize::from(tq)]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn perfect_link_costs_the_hop_penalty() {
        let costs = LinkCosts::new(30);
        assert_eq!(costs.hop(255), 128);
        assert_eq!(costs.hop(0), COST_INFINITE);
        assert!(costs.hop(128) > costs.hop(200));
    }

    #[test]
    fn log_domain_matches_batman_products() {
        // Three perfect hops with penalty 30: batman-adv gives 255*(225/255)^3 = 175.
        let costs = LinkCosts::new(30);
        let path = add_costs(add_costs(costs.hop(255), costs.hop(255)), costs.hop(255));
        assert_eq!(cost_to_tq(path), 175);
        assert_eq!(cost_to_tq(0), 255);
        assert_eq!(cost_to_tq(COST_INFINITE), 0);
    }

    #[test]
    fn sums_saturate_below_infinity() {
        assert_eq!(add_costs(COST_MAX_FINITE, 5), COST_MAX_FINITE);
        assert_eq!(add_costs(COST_INFINITE, 0), COST_INFINITE);
        assert_eq!(LinkCosts::new(0).hop(255), 1);
    }
}
