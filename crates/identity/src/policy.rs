//! Link authorization policy: ordered allow/deny rules on SPIFFE ID patterns, first match
//! wins, read from YAML.
//!
//! ```yaml
//! default: deny            # when no rule matches (default: allow)
//! rules:
//!   - deny: "spiffe://example.org/node/0bad*"
//!   - allow: "spiffe://example.org/node/*"
//! ```
//! A pattern is a SPIFFE ID in which `*` matches any run of characters.

/// Most rules in a policy. Every link handshake walks the list, so it stays short; 1,024 rules
/// is far more than hand-written policies have.
pub const MAX_RULES: usize = 1024;

/// Longest pattern, matching the longest SPIFFE ID the specification allows (2,048 bytes).
pub const MAX_PATTERN_BYTES: usize = 2048;

/// What a rule or the default decides.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Deserialize, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Decision {
    /// The peer may link.
    Allow,
    /// The peer may not link.
    Deny,
}

/// One rule.
#[derive(Debug, Clone, PartialEq, Eq, serde::Deserialize, serde::Serialize)]
#[serde(rename_all = "lowercase", deny_unknown_fields)]
pub enum Rule {
    /// Allow IDs matching the pattern.
    Allow(String),
    /// Deny IDs matching the pattern.
    Deny(String),
}

/// A validated policy.
#[derive(Debug, Clone, PartialEq, Eq, serde::Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields)]
pub struct Policy {
    /// Decision when no rule matches.
    #[serde(default = "allow")]
    pub default: Decision,
    /// Rules, first match wins.
    #[serde(default)]
    pub rules: Vec<Rule>,
}

fn allow() -> Decision {
    Decision::Allow
}

impl Default for Policy {
    /// Allows every node of the trust domain: the certificate checks already limit links to
    /// the domain's members.
    fn default() -> Policy {
        Policy {
            default: Decision::Allow,
            rules: Vec::new(),
        }
    }
}

/// Why a policy text was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PolicyError {
    /// Not valid YAML for a policy; the message names the field.
    #[error("policy: {0}")]
    Parse(String),
    /// Too many rules.
    #[error("policy: {count} rules, at most {MAX_RULES} allowed")]
    TooManyRules {
        /// Rules given.
        count: usize,
    },
    /// A pattern that cannot match a SPIFFE ID.
    #[error(
        "policy: rules[{index}]: pattern {pattern:?} must start with \"spiffe://\" and be at most {MAX_PATTERN_BYTES} bytes"
    )]
    Pattern {
        /// Position of the rule.
        index: usize,
        /// The pattern.
        pattern: String,
    },
}

impl Policy {
    /// Parses and validates a policy from YAML.
    pub fn from_yaml(text: &str) -> Result<Policy, PolicyError> {
        let policy: Policy =
            serde_saphyr::from_str(text).map_err(|error| PolicyError::Parse(error.to_string()))?;
        if policy.rules.len() > MAX_RULES {
            return Err(PolicyError::TooManyRules {
                count: policy.rules.len(),
            });
        }
        for (index, rule) in policy.rules.iter().enumerate() {
            let pattern = rule.pattern();
            if !pattern.starts_with("spiffe://") || pattern.len() > MAX_PATTERN_BYTES {
                return Err(PolicyError::Pattern {
                    index,
                    pattern: pattern.to_string(),
                });
            }
        }
        Ok(policy)
    }

    /// The decision for `spiffe_id`.
    pub fn decide(&self, spiffe_id: &str) -> Decision {
        self.rules
            .iter()
            .find(|rule| glob_matches(rule.pattern().as_bytes(), spiffe_id.as_bytes()))
            .map_or(self.default, Rule::decision)
    }
}

impl Rule {
    fn pattern(&self) -> &str {
        match self {
            Rule::Allow(pattern) | Rule::Deny(pattern) => pattern,
        }
    }

    fn decision(&self) -> Decision {
        match self {
            Rule::Allow(_) => Decision::Allow,
            Rule::Deny(_) => Decision::Deny,
        }
    }
}

/// `*`-only glob match in O(pattern × text) time without recursion, so no pattern can make a
/// handshake slow.
fn glob_matches(pattern: &[u8], text: &[u8]) -> bool {
    let (mut p, mut t) = (0usize, 0usize);
    let mut star: Option<(usize, usize)> = None;
    while t < text.len() {
        if p < pattern.len() && pattern[p] == b'*' {
            star = Some((p, t));
            p += 1;
        } else if p < pattern.len() && pattern[p] == text[t] {
            p += 1;
            t += 1;
        } else if let Some((star_p, star_t)) = star {
            p = star_p + 1;
            t = star_t + 1;
            star = Some((star_p, star_t + 1));
        } else {
            return false;
        }
    }
    pattern[p..].iter().all(|&b| b == b'*')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn first_matching_rule_decides_and_default_covers_the_rest() {
        let policy = Policy::from_yaml(
            "default: deny\nrules:\n  - deny: \"spiffe://example.org/node/0bad*\"\n  - allow: \"spiffe://example.org/node/*\"\n",
        )
        .expect("policy");
        assert_eq!(
            policy.decide("spiffe://example.org/node/0bad0000000000000000000000000000"),
            Decision::Deny
        );
        assert_eq!(
            policy.decide("spiffe://example.org/node/1234000000000000000000000000000a"),
            Decision::Allow
        );
        assert_eq!(
            policy.decide("spiffe://other.org/node/1234000000000000000000000000000a"),
            Decision::Deny
        );
        assert_eq!(
            Policy::default().decide("spiffe://x/node/y"),
            Decision::Allow
        );
    }

    #[test]
    fn bad_policies_name_the_problem() {
        let unknown = Policy::from_yaml("defualt: deny\n").expect_err("unknown field");
        assert!(unknown.to_string().contains("defualt"), "{unknown}");
        let pattern = Policy::from_yaml("rules:\n  - allow: \"*\"\n").expect_err("pattern");
        assert!(
            matches!(pattern, PolicyError::Pattern { index: 0, .. }),
            "{pattern}"
        );
        let action =
            Policy::from_yaml("rules:\n  - permit: \"spiffe://a/*\"\n").expect_err("action");
        assert!(action.to_string().contains("permit"), "{action}");
    }

    #[test]
    fn glob_handles_stars_anywhere() {
        assert!(glob_matches(b"a*c", b"abbbc"));
        assert!(glob_matches(b"*", b""));
        assert!(glob_matches(b"a**", b"a"));
        assert!(!glob_matches(b"a*c", b"abbb"));
        assert!(!glob_matches(b"abc", b"abcd"));
        assert!(glob_matches(b"*b*d", b"abcbd"));
    }
}
