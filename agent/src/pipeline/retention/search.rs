//! The backward search: from a sample of the requested types' instances, up through whatever
//! references them, one heap walk per step, until every sampled instance is traced to a static
//! field (or to an object nothing on the heap references) or a budget stops it.
//!
//! Why not the whole object graph: at 24 B per object and 12 per reference it needs about
//! 0.5 GB at 10 M objects, far past the agent's 64 MB. What is kept here is only the sampled
//! instances and their ancestors ([`tracked`](super::tracked)), a few thousand objects for the
//! usual leak, whatever the heap's size. The price is one walk per step of the longest path
//! not yet settled (a walk takes about what a census does), with the application running
//! between walks; objects found in the middle of a walk have their referrers found in the same
//! walk too when those come later in it, so many paths need fewer walks than steps.
//!
//! Each walk, in a suspension of its own ([`walk`](super::walk)): addresses are refreshed from
//! the weak handles if a GC ran since the last one, the statics' values are read, then every
//! object's references are checked against the followed objects, and any object referencing
//! one whose referrers are wanted is followed too. After each walk an instance is settled when
//! a static field's value reaches it by a path no longer than any still-open step could give
//! (so it is the shortest, as a search from the roots would find), or when nothing but
//! complete steps lead to it (its roots are then not statics); the next walk looks only for the
//! referrers of objects on the way to unsettled instances ([`settle`](super::settle)). The
//! sample itself and what each instance in it stands for: [`target`](super::target).

use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use super::settle::{mark_scanned, settle};
use super::statics::Slot;
use super::target::Target;
use super::tracked::{AddrMap, AddrSet, Edge, MAX_REFERRERS, NONE, Tracked, flag};
use super::walk::{self, Visit};
use crate::clr::profiler_info::ProfilerInfo;
use crate::clr::types::{ClassID, HRESULT, ObjectID};

/// The application runs at least this long between two walks.
const MIN_GAP: Duration = Duration::from_millis(20);
/// Most walks of one search.
pub const MAX_WALKS: u16 = 24;
/// Most objects followed down from one object whose retained size is measured.
pub const MAX_FOLLOWED_DOWN: u32 = 4096;

/// Why a search stopped before every sampled instance was settled.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Stopped {
    Time,
    Memory,
    Walks,
    /// The runtime is shutting down, or the process was sent a termination signal during a
    /// walk ([`crate::stop::why`]).
    Interrupted,
}

impl Stopped {
    pub fn name(self) -> &'static str {
        match self {
            Stopped::Time => "time",
            Stopped::Memory => "memory",
            Stopped::Walks => "walks",
            Stopped::Interrupted => "interrupted",
        }
    }
}

/// What the search needs from the agent between walks.
pub trait Host {
    /// Where the static fields live now, and the GC count when that was read.
    fn locate_statics(&mut self) -> (Vec<Slot>, u32);
    /// Lets the application run for `d` (the agent takes in its events meanwhile); false when
    /// told to stop.
    fn idle(&mut self, d: Duration) -> bool;
}

/// One walk, for the record.
#[derive(Clone, Copy, Debug, Default)]
pub struct WalkRecord {
    pub pause: Duration,
    pub objects: u64,
    /// Objects followed after it.
    pub followed: usize,
    /// Sampled instances still unsettled after it.
    pub unsettled: usize,
}

pub struct Searched {
    pub tracked: Tracked,
    pub walks: Vec<WalkRecord>,
    pub stopped: Option<Stopped>,
    /// Sampled instances not settled when the search ended.
    pub unsettled: usize,
    /// Objects on the heap at the last complete walk.
    pub heap_objects: u64,
    /// Objects whose class or size the runtime would not give.
    pub unreadable: u64,
    /// Whether some walk read the statics' values (no GC between locating and reading them).
    pub statics_read: bool,
    /// How long the search took (walks, gaps, analysis).
    pub elapsed: Duration,
    /// Largest memory the followed objects took (bytes).
    pub peak_bytes: usize,
    /// The GC count at the end of the last walk.
    last_gc: u32,
    /// Whether an object's first word is still taken as its ClassID (see `Visitor::class_of`).
    method_table_is_class: bool,
}

pub struct Limits<'a> {
    pub deadline: Instant,
    pub max_walks: u16,
    /// The latest GC's number (bumped by the GC-start event).
    pub gc: &'a AtomicU32,
    /// Classes whose instances hold no references (strings, arrays of numbers).
    pub no_references: &'a AddrSet,
    /// Classes of the application's own (not the framework's, not arrays).
    pub own_classes: &'a AddrSet,
}

/// Samples the requested types (`targets`: classes and counts; `target_of`: class → target)
/// and searches up from the samples until they are settled or a limit stops it.
pub fn run(
    info: &ProfilerInfo,
    host: &mut dyn Host,
    targets: &mut [Target],
    target_of: &AddrMap<usize>,
    budget: usize,
    baseline: usize,
    limits: &Limits<'_>,
) -> Result<Searched, HRESULT> {
    let started = Instant::now();
    let mut s = Searched {
        tracked: Tracked::new(budget, baseline),
        walks: Vec::new(),
        stopped: None,
        unsettled: 0,
        heap_objects: 0,
        unreadable: 0,
        statics_read: false,
        elapsed: Duration::ZERO,
        peak_bytes: 0,
        last_gc: limits.gc.load(Ordering::SeqCst),
        method_table_is_class: true,
    };
    loop {
        let sampling = s.walks.is_empty();
        tracing::info!("retention walk {} begins", s.walks.len() + 1);
        let (pause, stopped) =
            s.walk(info, host, limits, if sampling { Some((&mut *targets, target_of)) } else { None })?;
        if sampling {
            for t in targets.iter() {
                tracing::info!(
                    "retention sampling: {} instances met ({} in the census), every {}th sampled: {}",
                    t.seen,
                    t.instances,
                    t.stride,
                    t.samples.len()
                );
            }
        }
        let settled = settle(&mut s.tracked, targets);
        s.unsettled = settled.unsettled;
        if let Some(last) = s.walks.last_mut() {
            last.unsettled = settled.unsettled;
        }
        tracing::info!(
            "retention walk {}: {pause:?}, {} followed ({} KB), {} unsettled, {} to expand, stopped {stopped:?}",
            s.walks.len(),
            s.tracked.nodes.len(),
            s.tracked.bytes() >> 10,
            settled.unsettled,
            settled.expand
        );
        if let Some(why) = stopped {
            s.stopped = Some(why);
            break;
        }
        if settled.unsettled == 0 || settled.expand == 0 {
            break;
        }
        if !s.room_for_another(host, limits, pause) {
            break;
        }
    }
    s.elapsed = started.elapsed();
    Ok(s)
}

impl Searched {
    /// One walk: records the referrers of objects wanted (`EXPAND`), the references of
    /// objects followed down (`FORWARD`), and, with `sampling`, picks the samples.
    pub fn walk(
        &mut self,
        info: &ProfilerInfo,
        host: &mut dyn Host,
        limits: &Limits<'_>,
        sampling: Option<(&mut [Target], &AddrMap<usize>)>,
    ) -> Result<(Duration, Option<Stopped>), HRESULT> {
        let number = self.walks.len() as u16 + 1;
        let (slots, located_at_gc) = host.locate_statics();
        let empty = AddrMap::default();
        let (targets, target_of, is_sampling) = match sampling {
            Some((t, o)) => (t, o, true),
            None => (&mut [][..], &empty, false),
        };
        let mut v = Visitor {
            info,
            tracked: &mut self.tracked,
            walk: number,
            sampling: is_sampling,
            targets,
            target_of,
            slots: &slots,
            located_at_gc,
            statics: AddrMap::default(),
            gc: limits.gc,
            last_gc: self.last_gc,
            current: 0,
            current_node: NONE,
            visited: 0,
            unreadable: 0,
            deadline: limits.deadline,
            stopped: None,
            first_new: 0,
            no_references: limits.no_references,
            own_classes: limits.own_classes,
            method_table_is_class: self.method_table_is_class,
            gen0: Vec::new(),
        };
        let pause = walk::suspended(info, &mut v)?;
        let (visited, unreadable, stopped, statics_read) = (v.visited, v.unreadable, v.stopped, !v.statics.is_empty());
        self.method_table_is_class = v.method_table_is_class;
        self.last_gc = v.last_gc;
        self.statics_read |= statics_read;
        self.tracked.dedup_edges();
        self.peak_bytes = self.peak_bytes.max(self.tracked.bytes());
        if stopped.is_none() {
            self.heap_objects = visited;
            self.unreadable = unreadable;
            mark_scanned(&mut self.tracked, number);
        }
        self.walks.push(WalkRecord { pause, objects: visited, followed: self.tracked.nodes.len(), unsettled: 0 });
        Ok((pause, stopped))
    }

    /// Whether another walk fits (walks, time) after letting the application run as long as
    /// the last one paused it; records why not.
    pub fn room_for_another(&mut self, host: &mut dyn Host, limits: &Limits<'_>, last_pause: Duration) -> bool {
        if self.walks.len() as u16 >= limits.max_walks {
            self.stopped = Some(Stopped::Walks);
            return false;
        }
        let gap = last_pause.max(MIN_GAP);
        // Another walk must fit before the deadline (it takes about as long as the last).
        if Instant::now() + gap + last_pause > limits.deadline {
            self.stopped = Some(Stopped::Time);
            return false;
        }
        if !host.idle(gap) || crate::stop::walk_should_stop() {
            self.stopped = Some(Stopped::Interrupted);
            return false;
        }
        true
    }
}

struct Visitor<'a> {
    info: &'a ProfilerInfo,
    tracked: &'a mut Tracked,
    walk: u16,
    /// The first walk picks the samples.
    sampling: bool,
    targets: &'a mut [Target],
    target_of: &'a AddrMap<usize>,
    slots: &'a [Slot],
    located_at_gc: u32,
    /// The statics' values (value → field), read at the start of the walk; empty if a GC ran
    /// since they were located.
    statics: AddrMap<u32>,
    gc: &'a AtomicU32,
    /// The GC count at the end of the previous walk.
    last_gc: u32,
    current: ObjectID,
    current_node: u32,
    visited: u64,
    unreadable: u64,
    deadline: Instant,
    stopped: Option<Stopped>,
    /// Nodes from this index on were found in this walk (and need handles).
    first_new: usize,
    /// Classes whose instances hold no references (strings, arrays of numbers).
    no_references: &'a AddrSet,
    own_classes: &'a AddrSet,
    /// Whether an object's first word is taken as its ClassID (see `class_of`).
    method_table_is_class: bool,
    /// Where gen0 has allocated since the last GC, read at the start of the walk.
    gen0: Vec<(ObjectID, ObjectID)>,
}

impl Visitor<'_> {
    /// Follows `target`, referenced by the object being visited, which is followed down.
    fn follow_child(&mut self, target: ObjectID) -> Option<u32> {
        let owner = self.tracked.nodes[self.current_node as usize].owner;
        if owner != NONE {
            let (count, capped) = &mut self.tracked.owners[owner as usize];
            if *count >= MAX_FOLLOWED_DOWN {
                *capped = true;
                return None;
            }
            *count += 1;
        }
        let info = self.info;
        let class = if self.method_table_is_class {
            // SAFETY: `target` is referenced by a live object with the runtime suspended, so it is
            // a live object whose first word is its MethodTable.
            unsafe { (target as *const usize).read() }
        } else {
            info.class_of_object(target).ok()?
        };
        let Ok(size) = info.object_size(target) else {
            self.unreadable += 1;
            return None;
        };
        if !self.tracked.make_room(1, 1) {
            self.stopped = Some(Stopped::Memory);
            return None;
        }
        let field = self.statics.get(&target).copied().unwrap_or(NONE);
        // A static's value is held by more than this object: its references are not followed.
        let flags = if field == NONE { flag::FORWARD | flag::EXPAND } else { 0 };
        let node = self.tracked.add(target, class, size, flags, self.walk);
        let n = &mut self.tracked.nodes[node as usize];
        n.static_field = field;
        n.owner = owner;
        Some(node)
    }

    /// Counts an object already followed towards the retained size of the visited object's
    /// owner, and follows it down too.
    fn adopt(&mut self, child: u32) {
        let owner = self.tracked.nodes[self.current_node as usize].owner;
        if owner == NONE {
            return;
        }
        let (count, capped) = &mut self.tracked.owners[owner as usize];
        if *count >= MAX_FOLLOWED_DOWN {
            *capped = true;
            return;
        }
        *count += 1;
        let n = &mut self.tracked.nodes[child as usize];
        n.owner = owner;
        n.flags |= flag::FORWARD | flag::EXPAND;
    }

    /// An object's class. The ClassID of an object is its MethodTable pointer, the object's
    /// first word (as the runtime's `GetClassFromObject` returns it), which is read directly;
    /// every few thousand objects that is checked against the runtime's answer, and at the
    /// first difference the runtime is asked every time.
    fn class_of(&mut self, info: &ProfilerInfo, object: ObjectID) -> Option<ClassID> {
        if self.method_table_is_class && self.visited % 1024 != 1 {
            // SAFETY: `object` is a live object the heap walk handed us with the runtime
            // suspended; its first word is its MethodTable pointer.
            return Some(unsafe { (object as *const usize).read() });
        }
        let class = info.class_of_object(object).ok()?;
        if self.method_table_is_class {
            // SAFETY: as above.
            let word = unsafe { (object as *const usize).read() };
            if word != class {
                tracing::warn!(
                    "an object's first word is not its ClassID ({word:#x} vs {class:#x}): asking the runtime"
                );
                self.method_table_is_class = false;
            }
        }
        Some(class)
    }

    /// Allocated since the last GC (in gen0 now): likely garbage, not worth following.
    fn young(&self, object: ObjectID) -> bool {
        self.gen0.iter().any(|&(start, end)| start <= object && object < end)
    }

    /// Samples the object being visited, an instance of target `t` (followed from now on if it
    /// is not already); false when it cannot be (size unreadable: it is then not counted as met;
    /// or out of memory).
    fn sample(&mut self, info: &ProfilerInfo, object: ObjectID, class: ClassID, t: usize) -> bool {
        let node = match self.current_node {
            NONE => {
                let Ok(size) = info.object_size(object) else {
                    self.unreadable += 1;
                    self.targets[t].seen -= 1;
                    return false;
                };
                if !self.tracked.make_room(1, 0) {
                    self.stopped = Some(Stopped::Memory);
                    return false;
                }
                let node = self.tracked.add(object, class, size, 0, self.walk);
                self.tracked.nodes[node as usize].static_field = self.statics.get(&object).copied().unwrap_or(NONE);
                node
            }
            node => node,
        };
        let n = &mut self.tracked.nodes[node as usize];
        n.flags |= flag::SAMPLE | flag::EXPAND;
        // An instance of the application's own type is likely the object whose retained size
        // is wanted: followed down from now on, so that the search's walks measure it too.
        if n.static_field == NONE && n.owner == NONE && self.own_classes.contains(&class) {
            n.flags |= flag::FORWARD;
            n.owner = self.tracked.owners.len() as u32;
            self.tracked.owners.push((0, false));
        }
        self.targets[t].samples.push(node);
        self.current_node = node;
        true
    }

    /// Follows the object being visited (found referencing a followed one).
    fn follow_current(&mut self) -> Option<u32> {
        let info = self.info;
        let (class, size) = match (info.class_of_object(self.current), info.object_size(self.current)) {
            (Ok(c), Ok(s)) => (c, s),
            _ => {
                self.unreadable += 1;
                return None;
            }
        };
        if !self.tracked.make_room(1, 1) {
            self.stopped = Some(Stopped::Memory);
            return None;
        }
        let field = self.statics.get(&self.current).copied().unwrap_or(NONE);
        // What a static holds is attributed to it: its referrers (the runtime's storage for
        // statics) are not wanted. An object of the application's own type may be the one whose
        // retained size is wanted: followed down too.
        let own = field == NONE && self.own_classes.contains(&class);
        let flags = match (field == NONE, own) {
            (false, _) => 0,
            (true, false) => flag::EXPAND,
            (true, true) => flag::EXPAND | flag::FORWARD,
        };
        let node = self.tracked.add(self.current, class, size, flags, self.walk);
        self.tracked.nodes[node as usize].static_field = field;
        if own {
            self.tracked.nodes[node as usize].owner = self.tracked.owners.len() as u32;
            self.tracked.owners.push((0, false));
        }
        Some(node)
    }
}

impl Visit for Visitor<'_> {
    fn before(&mut self, info: &ProfilerInfo) {
        self.first_new = self.tracked.nodes.len();
        if self.sampling {
            self.gen0 = super::target::allocated_since_last_gc(info);
        }
        let gc = self.gc.load(Ordering::SeqCst);
        if gc != self.last_gc && !self.tracked.nodes.is_empty() {
            // A GC ran since the last walk: find every object again through its handle.
            for n in &mut self.tracked.nodes {
                if n.has(flag::DEAD) {
                    continue;
                }
                n.addr = if n.handle == 0 { 0 } else { info.object_from_handle(n.handle).unwrap_or(0) };
                if n.addr == 0 {
                    n.flags |= flag::DEAD;
                }
            }
            self.tracked.forget_dead_referrers();
            self.tracked.reindex();
        }
        if gc == self.located_at_gc {
            for slot in self.slots {
                // SAFETY: the runtime gave this address for a static field of an initialised
                // class and no GC has run since (checked above, with the runtime suspended),
                // so it is still the field's storage and holds an object reference or null.
                let value = unsafe { (slot.address as *const usize).read_volatile() };
                if value != 0 {
                    self.statics.entry(value).or_insert(slot.field);
                }
            }
        }
        if !self.statics.is_empty() {
            for n in &mut self.tracked.nodes {
                if !n.has(flag::DEAD) {
                    n.static_field = self.statics.get(&n.addr).copied().unwrap_or(NONE);
                }
            }
        }
        self.last_gc = gc;
    }

    fn object(&mut self, info: &ProfilerInfo, object: ObjectID) -> bool {
        self.visited += 1;
        if self.visited % 4096 == 0 {
            // Shutdown, or a termination signal during this suspension (`crate::stop`).
            if crate::stop::walk_should_stop() {
                self.stopped = Some(Stopped::Interrupted);
            } else if Instant::now() > self.deadline {
                self.stopped = Some(Stopped::Time);
            }
            if self.stopped.is_some() {
                return false;
            }
        }
        self.current = object;
        self.current_node = self.tracked.lookup(object).unwrap_or(NONE);
        let class = self.class_of(info, object);
        if self.sampling {
            match class {
                Some(class) if !self.young(object) => {
                    if let Some(&t) = self.target_of.get(&class) {
                        // Met, whether or not already followed (a field of an object followed
                        // down, say): skipping those would leave them out of the sample while
                        // the scale stands for them, biasing their paths low.
                        if self.targets[t].meet() && !self.sample(info, object, class, t) {
                            return self.stopped.is_none();
                        }
                    }
                }
                Some(_) => {}
                None => self.unreadable += 1,
            }
        }
        let forward = self.current_node != NONE && self.tracked.nodes[self.current_node as usize].has(flag::FORWARD);
        // Strings and arrays of numbers reference nothing: no need to ask.
        if !class.is_some_and(|c| self.no_references.contains(&c)) {
            walk::references(info, object, self);
        }
        if forward && self.stopped.is_none() {
            self.tracked.nodes[self.current_node as usize].flags |= flag::CHILDREN;
        }
        self.stopped.is_none()
    }

    fn reference(&mut self, target: ObjectID, slot: usize) -> bool {
        let current = self.current_node;
        if current != NONE && self.statics.contains_key(&target) {
            self.tracked.nodes[current as usize].flags |= flag::HOLDS_STATIC;
        }
        // An object followed down: everything it references is followed too.
        let forward = current != NONE && self.tracked.nodes[current as usize].has(flag::FORWARD);
        let child = match self.tracked.lookup(target) {
            Some(child) => child,
            None if forward => match self.follow_child(target) {
                Some(child) => child,
                None => return self.stopped.is_none(),
            },
            None => return true,
        };
        if child == current {
            return true;
        }
        let c = self.tracked.nodes[child as usize];
        if forward && c.owner == NONE && !c.has(flag::FORWARD) && c.static_field == NONE {
            // Followed already (a sample, say): now also down, for the same owner.
            self.adopt(child);
        }
        if !forward && !c.has(flag::EXPAND) {
            return true;
        }
        if c.referrers >= MAX_REFERRERS {
            self.tracked.nodes[child as usize].flags |= flag::CAPPED;
            return true;
        }
        if current == NONE {
            match self.follow_current() {
                Some(node) => self.current_node = node,
                None => return self.stopped.is_none(),
            }
        }
        if !self.tracked.make_room(0, 1) {
            self.stopped = Some(Stopped::Memory);
            return false;
        }
        let offset = slot.wrapping_sub(self.current).min(u32::MAX as usize) as u32;
        self.tracked.edges.push(Edge { child, parent: self.current_node, offset });
        let c = &mut self.tracked.nodes[child as usize];
        c.referrers = c.referrers.saturating_add(1);
        true
    }

    fn after(&mut self, info: &ProfilerInfo) {
        for n in &mut self.tracked.nodes[self.first_new..] {
            if n.handle == 0 && !n.has(flag::DEAD) {
                n.handle = info.create_weak_handle(n.addr).unwrap_or(0);
            }
        }
        self.last_gc = self.gc.load(Ordering::SeqCst);
    }
}
