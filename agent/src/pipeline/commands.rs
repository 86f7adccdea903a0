//! The collector's commands: parsing the lines it sends, spacing the ones that pause the
//! application through the gate, and running them (census, retention paths, peek, detach).
//! Also the one-off notices about commands (ignored, refused), which are not kept for replay.

use std::time::Instant;

use super::{Pipeline, census, gate, heap_walk, peek, retention, unix_ms};
use crate::clr::types::ClassID;
use crate::output::Batch;
use crate::output::records::{self, Num, Peek as PeekRecord};

/// A command that pauses the worker (an induced full GC and a heap walk).
#[derive(Debug, PartialEq)]
pub(super) enum Pausing {
    /// `tries`: how often this request was tried already (the runtime may not be ready).
    Census {
        tries: u32,
    },
    Retention(retention::Request),
    Peek(peek::Request),
}

/// A commanded census the runtime refuses for a passing reason is tried this often, spaced by
/// the gate (a second or more apart), before the collector is told it cannot have one now.
const COMMANDED_CENSUS_TRIES: u32 = 20;

/// What the collector asked for, as far as the loop is concerned.
pub(super) enum Command {
    Continue,
    Stop,
    Detach,
}

/// The `"types"` of a command (`retention`, `peek`): non-empty names, trimmed, at most `max`.
pub(super) fn requested_types(command: &serde_json::Value, cmd: &str, max: usize) -> Result<Vec<String>, String> {
    let types: Vec<String> = command
        .get("types")
        .and_then(|t| t.as_array())
        .ok_or_else(|| format!("{cmd} needs \"types\": a list of type names"))?
        .iter()
        .filter_map(|t| t.as_str())
        .map(|t| t.trim().to_string())
        .filter(|t| !t.is_empty())
        .take(max)
        .collect();
    if types.is_empty() {
        return Err(format!("{cmd} needs at least one type name in \"types\""));
    }
    Ok(types)
}

/// What one command line asks for.
#[derive(Debug, PartialEq)]
pub(super) enum Parsed {
    /// A command that pauses the application, with its name.
    Pausing(Pausing, String),
    Detach,
    /// Not acted on, and why (for a rate-limited warning).
    Ignored(String),
}

/// Reads one line from the collector.
pub(super) fn parse(line: &str) -> Parsed {
    let parsed = serde_json::from_str::<serde_json::Value>(line).ok();
    let cmd = parsed.as_ref().and_then(|v| v.get("cmd").and_then(|c| c.as_str()).map(str::to_string));
    let command = parsed.as_ref().unwrap_or(&serde_json::Value::Null);
    let pausing = match cmd.as_deref() {
        Some("census") => Pausing::Census { tries: 0 },
        Some("retention") => match retention::Request::from_command(command) {
            Ok(request) => Pausing::Retention(request),
            Err(why) => return Parsed::Ignored(format!("a retention command: {why}")),
        },
        Some("peek") => match peek::Request::from_command(command) {
            Ok(request) => Pausing::Peek(request),
            Err(why) => return Parsed::Ignored(format!("a peek command: {why}")),
        },
        Some("detach") => return Parsed::Detach,
        _ => {
            let shown: String = line.chars().take(120).collect();
            return Parsed::Ignored(format!("an unknown command from the collector: {shown}"));
        }
    };
    Parsed::Pausing(pausing, cmd.unwrap_or_default())
}

impl Pipeline<'_> {
    /// Acts on the collector's commands: `{"cmd":"census"}` (full GC, census, retained report),
    /// `{"cmd":"retention","types":[…]}` (full GC, retention paths), `{"cmd":"peek","types":[…]}`
    /// (full GC, sample instances with their fields), `{"cmd":"detach"}` (stop
    /// tracking and unload). The first three pause the worker: they go through the gate, which
    /// spaces them and refuses a flood (`gate.rs`).
    pub(super) fn take_commands(&mut self) -> Command {
        if let Some(waiting) = self.gate.due(Instant::now()) {
            if self.run_pausing(waiting) {
                return Command::Stop;
            }
        }
        for line in self.sink.poll_commands() {
            let (cmd, pausing) = match parse(&line) {
                Parsed::Pausing(pausing, cmd) => (Some(cmd), pausing),
                Parsed::Detach => return Command::Detach,
                Parsed::Ignored(what) => {
                    self.ignoring(&what);
                    continue;
                }
            };
            let now = Instant::now();
            match self.gate.offer(pausing, now) {
                gate::Offer::Run(pausing) => {
                    if self.run_pausing(pausing) {
                        return Command::Stop;
                    }
                }
                gate::Offer::Queued { runs_in } => {
                    tracing::info!(
                        "{} command waits {runs_in:.1?} for its turn (pausing commands are spaced)",
                        cmd.unwrap_or_default()
                    );
                }
                gate::Offer::Refused { retry_after } => {
                    let what = cmd.unwrap_or_default();
                    tracing::debug!("refused a {what} command (another one is waiting)");
                    if let Some(notice) = self.gate.notice(retry_after, now) {
                        self.refusal(&what, &notice);
                    }
                }
            }
        }
        Command::Continue
    }

    /// Runs one pausing command; true when told to stop meanwhile.
    pub(super) fn run_pausing(&mut self, pausing: Pausing) -> bool {
        let started = Instant::now();
        let mut again = None;
        let stop = match pausing {
            Pausing::Census { tries } => {
                match tries {
                    0 => tracing::info!("census requested by the collector"),
                    n => tracing::info!("census requested by the collector: try {}", n + 1),
                }
                let unavailable_before = self.census_unavailable.is_some();
                self.census_missed = None;
                let stop = self.full_gc_then_census(true);
                if !stop {
                    again = self.census_not_answered(tries, unavailable_before);
                }
                stop
            }
            Pausing::Retention(request) => {
                tracing::info!("retention paths requested for {:?}", request.types);
                if let Err(hr) = self.agent.info.force_gc() {
                    tracing::warn!("ForceGC failed: {hr:#x}");
                }
                // The induced GC's own events first, so the record carries its number.
                self.drain() || self.report_retention(&request, None)
            }
            Pausing::Peek(mut request) => {
                tracing::info!("peek requested for {:?}", request.types);
                let withheld = if request.strings { self.agent.config.peek_strings.withheld_because() } else { None };
                if let Some(why) = withheld {
                    request.strings = false;
                    self.command_warning(why);
                }
                if let Err(hr) = self.agent.info.force_gc() {
                    tracing::warn!("ForceGC failed: {hr:#x}");
                }
                let stop = self.drain();
                if !stop {
                    self.report_peek(&request, withheld);
                }
                stop
            }
        };
        let ended = Instant::now();
        self.gate.finished(started, ended);
        if let Some(census) = again {
            if let Err(gate::Taken { retry_after }) = self.gate.requeue(census, ended) {
                // Another command took the waiting place meanwhile: the collector asks again.
                self.refusal("census", &gate::Notice { retry_after, also_refused: 0 });
            }
        }
        stop
    }

    /// After a commanded census that sent no census: the census to try again (the runtime may
    /// not have been ready), or nothing, with the reason told to the collector — whoever asked
    /// hears an answer, never silence.
    fn census_not_answered(&mut self, tries: u32, unavailable_before: bool) -> Option<Pausing> {
        if let Some(why) = self.census_unavailable.clone() {
            // Said in a status when it was decided; said again to a later asker.
            if unavailable_before {
                self.command_status(&records::unavailable(records::UNAVAILABLE_CENSUS, &why));
            }
            return None;
        }
        let why = self.census_missed.take()?;
        if tries + 1 < COMMANDED_CENSUS_TRIES {
            tracing::info!("census not taken ({why}); trying again when the spacing allows");
            return Some(Pausing::Census { tries: tries + 1 });
        }
        self.command_status(&records::unavailable(
            records::UNAVAILABLE_CENSUS_REQUEST,
            &format!(
                "heap census unavailable for this request: {why}, at each of {COMMANDED_CENSUS_TRIES} tries; ask again later"
            ),
        ));
        None
    }

    /// Samples instances of `request`'s types with their fields (right after a full GC).
    pub(super) fn report_peek(&mut self, request: &peek::Request, strings_withheld: Option<&'static str>) {
        let gc = self.history.completed;
        let info = &self.agent.info;
        // The classes on the heap, named: which of them are asked for.
        let classes: Vec<(ClassID, std::sync::Arc<str>)> = match census::take(info) {
            Ok(c) if c.stopped.is_none() => c.by_class.keys().map(|&class| (class, self.names.class(class))).collect(),
            Ok(_) => {
                tracing::info!("peek abandoned: {}", crate::stop::why().unwrap_or_default());
                return;
            }
            Err(hr) => {
                let record = PeekRecord {
                    gc: Some(gc.into()),
                    t_ms: Num::some(self.agent.elapsed_ms()),
                    unix_ms: Num::some(unix_ms()),
                    pause_ms: Num::some(0.0),
                    strings: request.strings,
                    strings_withheld: strings_withheld.map(str::to_string),
                    error: Some(heap_walk::refused(hr)),
                    types: Vec::new(),
                };
                self.command_warning(&format!("peek unavailable: {}", heap_walk::refused(hr)));
                let payload = records::line("peek", &record);
                self.deliver(&payload, &[]);
                return;
            }
        };
        let t_ms = self.agent.elapsed_ms();
        let mut record = peek::run(info, request, gc, &classes, &mut self.retention.fields, &mut self.names, t_ms);
        record.strings_withheld = strings_withheld.map(str::to_string);
        tracing::info!(
            "peek: {} types, {} samples, pause {:.1} ms",
            record.types.len(),
            record.types.iter().map(|t| t.samples.len()).sum::<usize>(),
            record.pause_ms.unwrap_or_default().0
        );
        let payload = records::line("peek", &record);
        self.deliver(&payload, &[]);
    }

    /// Says a command line was ignored, at most once a second (the rest are counted in).
    pub(super) fn ignoring(&mut self, what: &str) {
        match self.ignored.allow(Instant::now()) {
            Some(0) => self.command_warning(&format!("ignoring {what}")),
            Some(more) => self.command_warning(&format!("ignoring {what} ({more} more ignored since the last notice)")),
            None => tracing::debug!("ignoring {what}"),
        }
    }

    /// A `status` about a command, not kept for replay to later connections.
    pub(super) fn command_warning(&mut self, message: &str) {
        self.command_status(&records::status("warn", message));
    }

    /// A warning to whoever sent the command, not kept for later connections.
    pub(super) fn command_status(&mut self, body: &records::Status) {
        tracing::warn!("{}", body.message);
        let line = records::line("status", body);
        self.notify(&line);
    }

    /// Tells the collector a pausing command was refused, and when to try again.
    pub(super) fn refusal(&mut self, what: &str, notice: &gate::Notice) {
        let retry_after_ms = notice.retry_after.as_millis() as u64;
        let also = if notice.also_refused > 0 {
            format!(" ({} more refused since the last notice)", notice.also_refused)
        } else {
            String::new()
        };
        let message = format!(
            "refused a {what} command: another pausing command is already waiting for its turn. Commands that pause \
             the application (census, retention, peek) run one at a time, spaced by four times the previous one's \
             duration (at least {:?}); retry in {:.1} s{also}",
            gate::MIN_SPACING,
            notice.retry_after.as_secs_f64()
        );
        tracing::warn!("{message}");
        let refusal = records::Status {
            refused: Some(what.to_string()),
            retry_after_ms: Num::some(retry_after_ms),
            ..records::status("warn", &message)
        };
        let line = records::line("status", &refusal);
        self.notify(&line);
    }

    /// Sends one line without keeping it for replay.
    pub(super) fn notify(&mut self, line: &str) {
        self.sink
            .deliver(&Batch { hello: &self.hello, statuses: &self.statuses, stacks: &[], payload: line }, &mut |_| {
                String::new()
            });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn command_lines_are_read_into_what_they_ask_for() {
        assert_eq!(parse(r#"{"cmd":"census"}"#), Parsed::Pausing(Pausing::Census { tries: 0 }, "census".into()));
        assert_eq!(parse(r#"{"cmd":"detach"}"#), Parsed::Detach);
        match parse(r#"{"cmd":"retention","types":["LeakApp.Subscriber"],"max_paths":3}"#) {
            Parsed::Pausing(Pausing::Retention(r), cmd) => {
                assert_eq!(
                    (r.types, r.max_paths, cmd.as_str()),
                    (vec!["LeakApp.Subscriber".to_string()], 3, "retention")
                )
            }
            other => panic!("{other:?}"),
        }
        match parse(r#"{"cmd":"peek","types":["App.Session"]}"#) {
            Parsed::Pausing(Pausing::Peek(r), _) => assert_eq!(r.types, ["App.Session"]),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn bad_command_lines_are_ignored_with_a_reason_and_never_run() {
        let ignored = |line: &str| match parse(line) {
            Parsed::Ignored(why) => why,
            other => panic!("{line}: {other:?}"),
        };
        assert!(ignored(r#"{"cmd":"retention"}"#).starts_with("a retention command: retention needs \"types\""));
        assert!(ignored(r#"{"cmd":"peek","types":[" "]}"#).starts_with("a peek command: peek needs at least one type"));
        assert!(ignored(r#"{"cmd":"format_disk"}"#).contains("unknown command"));
        let long = format!("{{\"x\":\"{}\"}}", "y".repeat(10_000));
        let why = ignored(&long);
        assert!(why.len() < 200, "a hostile line is not echoed whole: {} bytes", why.len());
        assert!(ignored("not json at all").contains("not json at all"));
    }
}
