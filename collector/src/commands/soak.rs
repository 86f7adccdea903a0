//! `leakscope soak --duration D [--warmup W] [--fail-on EXPR…] [--baseline FILE] -- COMMAND…`:
//! run a worker with the agent inducing full GCs at fixed points, judge every type and call
//! site, write report.json, junit.xml and report.html, and exit 0 (pass), 1 (a rule is broken)
//! or 2 (usage or infrastructure error).

use crate::cli::SoakArgs;
use crate::commands::run::{TargetSpec, run_target};
use crate::error::{CliError, CliResult, EXIT_USAGE};
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
    let settings = SoakSettings {
        duration_ms: args.duration.as_millis() as u64,
        warmup_ms: args.warmup.map(|w| w.as_millis() as u64),
        gc_every_ms: args.gc_every.as_millis() as u64,
        fail_on: args.fail_on.clone(),
        baseline: args.baseline.clone(),
        strict: args.strict,
    };
    let ctx = Context::new(settings)?;
    let points_possible = args.duration.as_secs_f64()
        * (1.0
            - ctx
                .settings
                .warmup_ms
                .map_or(crate::soak::DEFAULT_WARMUP_FRACTION, |w| {
                    w as f64 / args.duration.as_millis() as f64
                }))
        / args.gc_every.as_secs_f64();
    if points_possible < ctx.trend.min_points as f64 {
        crate::commands::print_stderr(&format!(
            "leakscope: warning: with a full GC every {} this soak gives about {:.0} comparable points after warm-up; \
             verdicts need at least {} (use a longer --duration or a shorter --gc-every)\n",
            crate::units::format_duration(args.gc_every),
            points_possible.floor(),
            ctx.trend.min_points
        ));
    }
    let outcome = run_target(TargetSpec {
        argv: args.command,
        out: args.out,
        interval: args.interval,
        duration: Some(args.duration),
        plain: args.plain,
        libs: args.libs,
        mode: "soak",
        out_prefix: "leakscope-soak",
        extra_env: vec![(
            "LEAKSCOPE_INDUCE_FULL_GC".to_string(),
            format!("{}ms", args.gc_every.as_millis()),
        )],
        soak: Some(ctx),
        ask_paths: !args.no_paths,
        capture: None,
    })
    // Whatever kept the soak from running (no agent library, command not found, output
    // directory not writable) is an infrastructure error for a CI gate: exit 2.
    .map_err(|e| e.with_code(EXIT_USAGE))?;
    Ok(crate::soak::exit_code_of(&outcome.report))
}
