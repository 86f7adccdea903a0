//! `leakscope soak --duration D [--warmup W] [--gc-every P] [--fail-on EXPR…] [--baseline FILE] -- COMMAND…`:
//! run a worker with the agent inducing full GCs at fixed points, judge every type and call
//! site, write report.json, junit.xml and report.html, and exit 0 (pass), 1 (a rule is broken)
//! or 2 (too few points to judge, or a usage or infrastructure error).

use crate::cli::SoakArgs;
use crate::commands::print_stderr;
use crate::commands::run::{TargetSpec, run_target};
use crate::error::{CliError, CliResult, EXIT_USAGE};
use crate::soak::plan::Plan;
use crate::soak::{Context, SoakSettings};

pub fn soak(args: SoakArgs) -> CliResult<i32> {
    if let Some(w) = args.warmup {
        if w >= args.duration {
            return Err(CliError::usage(format!(
                "--warmup {} is not shorter than --duration {}",
                crate::units::format_duration(w),
                crate::units::format_duration(args.duration)
            ))
            .hint("the verdicts need comparable points after the warm-up"));
        }
    }
    let plan = Plan::new(args.duration, args.warmup, args.gc_every, args.interval);
    let settings = SoakSettings {
        duration_ms: args.duration.as_millis() as u64,
        warmup_ms: args.warmup.map(|w| w.as_millis() as u64),
        gc_every_ms: plan.gc_every.as_millis() as u64,
        gc_every_chosen: plan.gc_every_chosen,
        allow_short: args.allow_short,
        fail_on: args.fail_on.clone(),
        baseline: args.baseline.clone(),
        strict: args.strict,
    };
    let ctx = Context::new(settings)?;
    if let Some(short) = plan.shortfall(ctx.trend.min_points as u64, !args.libs.no_native) {
        if !args.allow_short {
            return Err(CliError::usage(short.problem).hint(short.fix).hint(
                "or --allow-short to run anyway: the soak then ends INCONCLUSIVE (exit 2) unless it finds a leak",
            ));
        }
        print_stderr(&format!(
            "leakscope: warning: {} (--allow-short: running anyway; without enough points the soak ends INCONCLUSIVE)\n",
            short.problem
        ));
    }
    print_stderr(&format!("leakscope soak: {}\n", plan.describe()));
    let outcome = run_target(TargetSpec {
        argv: args.command,
        out: args.out,
        interval: plan.interval,
        duration: Some(args.duration),
        plain: args.plain,
        libs: args.libs,
        mode: "soak",
        out_prefix: "leakscope-soak",
        extra_env: soak_env(plan.gc_every),
        soak: Some(ctx),
        ask_paths: !args.no_paths,
        capture: None,
    })
    // Whatever kept the soak from running (no agent library, command not found, output
    // directory not writable) is an infrastructure error for a CI gate: exit 2.
    .map_err(|e| e.with_code(EXIT_USAGE))?;
    Ok(crate::report::exit_code_of(&outcome.report))
}

/// What a soak asks of the producers beyond `run`: a full GC (a census) at its period, and
/// native totals counted call by call, so that the native total is judged exactly (a soak is a
/// staging gate: precision over the few per cent a malloc-bound program pays for it). A value
/// the user set for the totals is kept.
fn soak_env(gc_every: std::time::Duration) -> Vec<(String, String)> {
    let mut env = vec![("LEAKSCOPE_INDUCE_FULL_GC".to_string(), format!("{}ms", gc_every.as_millis()))];
    if std::env::var_os("LEAKSCOPE_NATIVE_TOTALS").is_none() {
        env.push(("LEAKSCOPE_NATIVE_TOTALS".to_string(), "exact".to_string()));
    }
    env
}
