//! What a soak is judged with: the settings, the `--fail-on` rules parsed (or the default
//! rules), the baseline loaded, and the trend test's constants.

use super::baseline;
use super::model::{DEFAULT_MANAGED_RULE, DEFAULT_RULE};
use super::rules::{self, Rule};
use crate::analysis::TrendSettings;
use crate::error::CliError;
use crate::session_info::SoakSettings;

/// Settings with the rules parsed and the baseline loaded.
#[derive(Debug, Clone)]
pub struct Context {
    pub settings: SoakSettings,
    pub rules: Vec<Rule>,
    /// No `--fail-on` was given: [`DEFAULT_RULE`] and [`DEFAULT_MANAGED_RULE`] apply.
    pub default_rule: bool,
    pub baseline: Option<baseline::Baseline>,
    pub trend: TrendSettings,
}

impl Context {
    /// Parses the rules and loads the baseline; both are usage errors (exit 2) when bad.
    pub fn new(settings: SoakSettings) -> Result<Context, CliError> {
        let mut rules = Vec::new();
        for text in &settings.fail_on {
            let rule = rules::parse_rule(text).map_err(|e| CliError::usage(e.render()).hint(rules::RULE_EXAMPLES))?;
            rules.push(rule);
        }
        let default_rule = rules.is_empty();
        if default_rule {
            for text in [DEFAULT_RULE, DEFAULT_MANAGED_RULE] {
                rules.push(rules::parse_rule(text).expect("the default rules parse"));
            }
        }
        let baseline = match &settings.baseline {
            Some(path) => Some(baseline::load(path).map_err(|e| {
                CliError::usage(e).hint("--baseline takes the report.json of an earlier `leakscope soak`")
            })?),
            None => None,
        };
        Ok(Context { settings, rules, default_rule, baseline, trend: TrendSettings::default() })
    }

    /// The threshold used for subjects no growth rule covers (shown, not gated).
    pub(super) fn info_threshold(&self) -> f64 {
        rules::parse_rule(DEFAULT_RULE).map(|r| r.value).unwrap_or(1e5)
    }
}
