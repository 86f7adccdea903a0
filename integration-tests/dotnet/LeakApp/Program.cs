// Scenario programs for leakscope's integration tests. Each scenario is a small, realistic
// shape of leak (or of non-leak) whose type and allocating method are known in advance.
//
// usage: LeakApp <scenario> [seconds] [options]
// Every scenario prints "ready" once its steady state begins and "done <checksum>" at the end,
// so tests can compare stdout with and without the agent.
using System.Collections.Concurrent;
using System.Diagnostics;
using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;

namespace LeakApp;

public static class Program
{
    public static int Main(string[] args)
    {
        string scenario = args.Length > 0 ? args[0] : "help";
        double seconds = args.Length > 1 ? double.Parse(args[1], System.Globalization.CultureInfo.InvariantCulture) : 10;
        var until = Stopwatch.StartNew();
        bool Running() => until.Elapsed.TotalSeconds < seconds;

        long checksum = scenario switch
        {
            "strings" => StringLeak.Run(Running, args),
            "churn" => Churn.Run(Running),
            "generic" => GenericLeak.Run(Running),
            "threads" => ThreadedLeak.Run(Running),
            "hold" => StringLeak.LeakThenHold(seconds, args),
            "alloc-bench" => AllocBench.Run(args),
            "retention" => RetentionLeaks.Run(Running, args),
            "retained" => PayloadLeak.Run(Running, args),
            "big-heap" => BigHeap.Run(Running, args),
            "thread-static" => NoteKeeper.Run(Running),
            "collectible" => PluginHost.Run(Running, args),
            "exit-code" => ExitCode(),
            _ => Help(),
        };
        Console.WriteLine($"done {checksum}");
        return scenario == "exit-code" ? 3 : 0;
    }

    static long ExitCode()
    {
        Console.WriteLine("ready");
        var list = new List<string>();
        for (int i = 0; i < 20000; i++) list.Add(new string('x', i % 100));
        return list.Count;
    }

    static long Help()
    {
        Console.Error.WriteLine("scenarios: strings churn generic threads hold alloc-bench retention retained big-heap thread-static collectible exit-code");
        return -1;
    }
}

/// The motivating leak: strings appended to a static list from one known method, under churn.
public static class StringLeak
{
    public static readonly List<string> Retained = new();

    [MethodImpl(MethodImplOptions.NoInlining)]
    public static void RecordAuditLine(int i)
    {
        Retained.Add($"audit entry {i:D8} for order {i * 7919 % 100000:D6} status=processed");
    }

    public static long Run(Func<bool> running, string[] args)
    {
        Console.WriteLine("ready");
        long churn = 0;
        int i = 0;
        while (running())
        {
            for (int k = 0; k < 200; k++)
            {
                RecordAuditLine(i++);
                churn += Churn.Garbage(k);
            }
            Thread.Sleep(2);
        }
        return Retained.Count + churn % 7;
    }

    /// Leaks `mb` megabytes of strings, then stops leaking and holds them for the rest of the run,
    /// churning lightly, so an external heap dump and leakscope see the same steady heap.
    public static long LeakThenHold(double seconds, string[] args)
    {
        int mb = args.Length > 2 ? int.Parse(args[2]) : 100;
        long approx = 0;
        int i = 0;
        while (approx < (long)mb * 1024 * 1024)
        {
            RecordAuditLine(i++);
            approx += 22 + 2 * Retained[^1].Length;
        }
        Console.WriteLine($"ready {Retained.Count}");
        var sw = Stopwatch.StartNew();
        long churn = 0;
        while (sw.Elapsed.TotalSeconds < seconds)
        {
            for (int k = 0; k < 100; k++) churn += Churn.Garbage(k);
            Thread.Sleep(5);
        }
        return Retained.Count + churn % 7;
    }
}

/// Heavy garbage, nothing kept.
public static class Churn
{
    [MethodImpl(MethodImplOptions.NoInlining)]
    public static long Garbage(int k)
    {
        var parts = new string[8];
        for (int j = 0; j < parts.Length; j++) parts[j] = (k * 31 + j).ToString();
        var joined = string.Join(",", parts);
        var bytes = new byte[64 + k % 512];
        return joined.Length + bytes.Length;
    }

    public static long Run(Func<bool> running)
    {
        Console.WriteLine("ready");
        long total = 0;
        var window = new Queue<object>();
        while (running())
        {
            for (int k = 0; k < 2000; k++)
            {
                total += Garbage(k);
                // A small sliding window: objects live a little while, then die.
                window.Enqueue(new byte[256]);
                if (window.Count > 5000) window.Dequeue();
            }
            Thread.Sleep(1);
        }
        return total % 1000;
    }
}

public sealed record Order(int Id, string Customer, decimal Amount);

/// A generic-type leak: a cache keyed by customer whose lists are never trimmed.
public static class GenericLeak
{
    public static readonly Dictionary<string, List<Order>> OrdersByCustomer = new();

    [MethodImpl(MethodImplOptions.NoInlining)]
    public static void IndexOrder(int i)
    {
        // A small dictionary every 20 orders keeps Dictionary<String, List<Order>> instances
        // alive; each holds lists of orders.
        var customer = "customer-" + (i % 5000);
        if (!OrdersByCustomer.TryGetValue(customer, out var list))
        {
            list = new List<Order>();
            OrdersByCustomer[customer] = list;
        }
        list.Add(new Order(i, customer, i % 1000));
        if (i % 20 == 0) Snapshots.Add(new Dictionary<string, List<Order>>(8) { [customer] = list });
    }

    public static readonly List<Dictionary<string, List<Order>>> Snapshots = new();

    public static long Run(Func<bool> running)
    {
        Console.WriteLine("ready");
        int i = 0;
        while (running())
        {
            for (int k = 0; k < 500; k++) IndexOrder(i++);
            Thread.Sleep(2);
        }
        return OrdersByCustomer.Count;
    }
}

/// Eight threads allocating and leaking at once, each from its own method.
public static class ThreadedLeak
{
    public static readonly ConcurrentBag<byte[]> Buffers = new();

    [MethodImpl(MethodImplOptions.NoInlining)]
    public static void LeakBuffer(int size) => Buffers.Add(new byte[size]);

    public static long Run(Func<bool> running)
    {
        Console.WriteLine("ready");
        var threads = new List<Thread>();
        long total = 0;
        for (int t = 0; t < 8; t++)
        {
            var thread = new Thread(() =>
            {
                long local = 0;
                int n = 0;
                while (running())
                {
                    for (int k = 0; k < 100; k++)
                    {
                        local += Churn.Garbage(k);
                        if (++n % 4 == 0) LeakBuffer(1000);
                    }
                    Thread.Sleep(1);
                }
                Interlocked.Add(ref total, local);
            });
            thread.Start();
            threads.Add(thread);
        }
        foreach (var thread in threads) thread.Join();
        return Buffers.Count > 0 ? 1 : 0;
    }
}

/// clock_gettime, for figures on the same clocks as the agent's (CLOCK_MONOTONIC) and the
/// process's CPU time without allocating.
static class PosixClock
{
    public const int Monotonic = 1;
    public const int ProcessCpu = 2;

    [StructLayout(LayoutKind.Sequential)]
    struct Timespec { public long Seconds; public long Nanos; }

    [DllImport("libc", EntryPoint = "clock_gettime")]
    static extern int ClockGettime(int clock, out Timespec ts);

    public static long Nanoseconds(int clock) => ClockGettime(clock, out var ts) == 0 ? ts.Seconds * 1_000_000_000 + ts.Nanos : -1;
}

/// Allocation-heavy throughput benchmark shaped like a message-processing worker: every
/// operation formats strings, builds a small object graph and a buffer, consults a long-lived
/// 100k-entry cache, and drops everything. Prints operations per second and GC figures.
public static class AllocBench
{
    public static long Run(string[] args)
    {
        var inv = System.Globalization.CultureInfo.InvariantCulture;
        double seconds = args.Length > 1 ? double.Parse(args[1], inv) : 10;
        int threads = args.Length > 2 ? int.Parse(args[2]) : 2;
        // Optional warm-up: the run lasts warmup + seconds, and the `window_*` figures cover only
        // the last `seconds` (steady state: code tiered up, the profiler's sampling settled).
        double warmup = args.Length > 3 ? double.Parse(args[3], inv) : 0;
        var cache = new Dictionary<int, string>();
        for (int i = 0; i < 100_000; i++) cache[i] = "cached-value-" + i;

        long ops = 0;
        long checksum = 0;
        var progress = new long[threads * 16]; // one cache line per thread
        var sw = Stopwatch.StartNew();
        var workers = Enumerable.Range(0, threads).Select(t => new Thread(() =>
        {
            long local = 0, sum = 0;
            int i = t * 1_000_003;
            while (sw.Elapsed.TotalSeconds < warmup + seconds)
            {
                for (int k = 0; k < 256; k++, i++) sum += Operation(i, cache);
                local += 256;
                Volatile.Write(ref progress[t * 16], local);
            }
            Interlocked.Add(ref ops, local);
            Interlocked.Add(ref checksum, sum);
        })).ToList();
        long Done() { long n = 0; for (int t = 0; t < threads; t++) n += Volatile.Read(ref progress[t * 16]); return n; }
        workers.ForEach(w => w.Start());
        // Benchmarks comparing phases inside one process (bench/agent_ab.py): every 100 ms, the
        // monotonic clock (the agent's), operations done and the process's CPU time, kept in
        // arrays made beforehand and written only at the end.
        string? ticksPath = Environment.GetEnvironmentVariable("ALLOC_BENCH_TICKS");
        Thread? ticker = null;
        if (!string.IsNullOrEmpty(ticksPath))
        {
            int capacity = (int)((warmup + seconds) * 10) + 100;
            var (at, done, cpu) = (new long[capacity], new long[capacity], new long[capacity]);
            ticker = new Thread(() =>
            {
                int n = 0;
                while (n < capacity && workers.Any(w => w.IsAlive))
                {
                    (at[n], done[n], cpu[n]) = (PosixClock.Nanoseconds(PosixClock.Monotonic), Done(), PosixClock.Nanoseconds(PosixClock.ProcessCpu));
                    n++;
                    Thread.Sleep(100);
                }
                using var w = new StreamWriter(ticksPath);
                for (int k = 0; k < n; k++) w.WriteLine($"{at[k]} {done[k]} {cpu[k]}");
            });
            ticker.Start();
        }
        if (warmup > 0)
        {
            var self = Process.GetCurrentProcess();
            Thread.Sleep(TimeSpan.FromSeconds(warmup));
            self.Refresh();
            (long ops0, double t0, TimeSpan cpu0, TimeSpan pause0, int gcs0) =
                (Done(), sw.Elapsed.TotalSeconds, self.TotalProcessorTime, GC.GetTotalPauseDuration(), GC.CollectionCount(0));
            Thread.Sleep(TimeSpan.FromSeconds(seconds * 0.98));
            self.Refresh();
            (long ops1, double t1, TimeSpan cpu1, TimeSpan pause1, int gcs1) =
                (Done(), sw.Elapsed.TotalSeconds, self.TotalProcessorTime, GC.GetTotalPauseDuration(), GC.CollectionCount(0));
            Console.WriteLine($"window_ops_per_sec {(ops1 - ops0) / (t1 - t0):F0}");
            Console.WriteLine($"window_s {t1 - t0:F3}");
            Console.WriteLine($"window_cpu_s {(cpu1 - cpu0).TotalSeconds:F3}");
            Console.WriteLine($"window_gc_pause_ms {(pause1 - pause0).TotalMilliseconds:F1}");
            Console.WriteLine($"window_gcs {gcs1 - gcs0}");
        }
        workers.ForEach(w => w.Join());
        ticker?.Join();
        double elapsed = sw.Elapsed.TotalSeconds;
        Console.WriteLine($"ops_per_sec {ops / elapsed:F0}");
        Console.WriteLine($"elapsed_s {elapsed:F3}");
        Console.WriteLine($"gc_pause_ms {GC.GetTotalPauseDuration().TotalMilliseconds:F1}");
        Console.WriteLine($"gc_count {GC.CollectionCount(0)} {GC.CollectionCount(1)} {GC.CollectionCount(2)}");
        Console.WriteLine($"allocated_mb {GC.GetTotalAllocatedBytes() / 1e6:F0}");
        return checksum & 1;
    }

    [MethodImpl(MethodImplOptions.NoInlining)]
    static long Operation(int i, Dictionary<int, string> cache)
    {
        var order = new Order(i, cache[i % 100_000], i % 977);
        var lines = new List<string>(4);
        for (int j = 0; j < 4; j++) lines.Add($"{order.Customer}:{order.Id + j}:{order.Amount}");
        var payload = new byte[64 + i % 192];
        payload[0] = (byte)i;
        return lines[3].Length + payload.Length + (order.Amount > 500 ? 1 : 0);
    }
}

/// A clock with a static event: whoever subscribes and never unsubscribes stays alive for as
/// long as the process does.
public static class Clock
{
    public static event EventHandler? Tick;

    public static int Raise()
    {
        Tick?.Invoke(null, EventArgs.Empty);
        return Tick?.GetInvocationList().Length ?? 0;
    }
}

/// Subscribes in its constructor and never unsubscribes: the event-handler leak.
public sealed class Subscriber
{
    readonly byte[] _state = new byte[32];
    public int Ticks;

    public Subscriber() => Clock.Tick += OnTick;

    void OnTick(object? sender, EventArgs e) => Ticks += _state.Length > 0 ? 1 : 0;
}

public sealed class Session(int id)
{
    public readonly string Id = "session-" + id;
    public readonly byte[] Data = new byte[64];
}

/// Sessions registered and never removed: the static-list leak.
public static class SessionRegistry
{
    public static readonly List<Session> Sessions = new();
}

/// Retention-path scenarios: subscribers that never unsubscribe from a static event, sessions
/// added to a static list, and audit strings in the string leak's static list, then churn.
/// usage: retention [seconds] [subscribers] [sessions]
public static class RetentionLeaks
{
    public static long Run(Func<bool> running, string[] args)
    {
        int subscribers = args.Length > 2 ? int.Parse(args[2]) : 5000;
        int sessions = args.Length > 3 ? int.Parse(args[3]) : 20000;
        for (int i = 0; i < subscribers; i++) _ = new Subscriber();
        for (int i = 0; i < sessions; i++) SessionRegistry.Sessions.Add(new Session(i));
        for (int i = 0; i < 5000; i++) StringLeak.RecordAuditLine(i);
        // A generic class's static (one per instantiation) and a thread static.
        for (int i = 0; i < 1000; i++) Registry<Tag>.Items.Add(new Tag("tag-" + i));
        var notes = new Thread(NoteKeeper.Keep) { IsBackground = true, Name = "notes" };
        notes.Start();
        NoteKeeper.Started.Wait();
        // Two more sessions, held from outside the heap: one by this frame, one by a GC handle.
        var heldByStack = new Session(-1);
        var handle = System.Runtime.InteropServices.GCHandle.Alloc(new Session(-2));
        Console.WriteLine($"ready subscribers={subscribers} sessions={sessions + 2} listed={sessions}");
        long churn = 0;
        int ticks = 0;
        while (running())
        {
            for (int k = 0; k < 200; k++) churn += Churn.Garbage(k);
            if (++ticks % 20 == 0) churn += Clock.Raise();
            Thread.Sleep(5);
        }
        GC.KeepAlive(heldByStack);
        handle.Free();
        return Clock.Raise() + SessionRegistry.Sessions.Count + churn % 7;
    }
}

/// Subscribers that each own a payload and never unsubscribe: what one keeps alive by itself
/// is its payload (plus itself).
public sealed class PayloadSubscriber
{
    readonly byte[] _payload;
    public int Ticks;

    public PayloadSubscriber(int payload)
    {
        _payload = new byte[payload];
        Ticker.Tick += OnTick;
    }

    void OnTick(object? sender, EventArgs e) => Ticks += _payload.Length > 0 ? 1 : 0;
}

public static class Ticker
{
    public static event EventHandler? Tick;
    public static int Raise()
    {
        Tick?.Invoke(null, EventArgs.Empty);
        return Tick?.GetInvocationList().Length ?? 0;
    }
}

/// usage: retained [seconds] [subscribers] [payload bytes]
public static class PayloadLeak
{
    public static long Run(Func<bool> running, string[] args)
    {
        int subscribers = args.Length > 2 ? int.Parse(args[2]) : 2000;
        int payload = args.Length > 3 ? int.Parse(args[3]) : 1024;
        for (int i = 0; i < subscribers; i++) _ = new PayloadSubscriber(payload);
        Console.WriteLine($"ready subscribers={subscribers} payload={payload}");
        long churn = 0;
        while (running())
        {
            for (int k = 0; k < 200; k++) churn += Churn.Garbage(k);
            Thread.Sleep(5);
        }
        return Ticker.Raise() + churn % 7;
    }
}

/// A heap of about N objects, a third of them a leak of closures in a static list (each a
/// Func<int>, its display class and a captured int[]), the rest records in a dictionary.
/// usage: big-heap [seconds] [objects]
public static class BigHeap
{
    public static readonly List<Func<int>> Retries = new();
    public static readonly Dictionary<int, string[]> Records = new();

    public static long Run(Func<bool> running, string[] args)
    {
        long objects = args.Length > 2 ? long.Parse(args[2]) : 1_000_000;
        long closures = objects / 3 / 3;
        for (long i = 0; i < closures; i++)
        {
            int[] attempts = new int[2];
            attempts[0] = (int)i;
            Retries.Add(() => attempts[0]);
        }
        // The rest: an array of 4 strings per record (5 objects).
        long records = (objects - closures * 3) / 5;
        for (int i = 0; i < records; i++)
            Records[i] = new[] { $"r{i}", $"name {i}", $"code-{i % 977}", i.ToString() };
        Console.WriteLine($"ready closures={closures} records={records}");
        long churn = 0;
        while (running())
        {
            for (int k = 0; k < 50; k++) churn += Churn.Garbage(k);
            Thread.Sleep(5);
        }
        return Retries.Count + Records.Count + churn % 7;
    }
}

public sealed record Tag(string Name);

/// A registry per item type: each instantiation has its own static list.
public static class Registry<T>
{
    public static readonly List<T> Items = new();
}

public sealed class Note(int id)
{
    public readonly int Id = id;
    public readonly byte[] Text = new byte[16];
}

/// A thread that keeps notes in a thread-static list for as long as it lives.
public static class NoteKeeper
{
    [ThreadStatic] static List<Note>? t_notes;
    public static readonly ManualResetEventSlim Started = new();

    /// The keeping thread's id as the OS knows it (what SOS and `ps -L` show).
    public static int OsThreadId;

    [System.Runtime.InteropServices.DllImport("libc", EntryPoint = "gettid")]
    static extern int GetTid();

    public static void Keep()
    {
        OsThreadId = GetTid();
        t_notes = new List<Note>();
        for (int i = 0; i < 700; i++) t_notes.Add(new Note(i));
        Started.Set();
        Thread.Sleep(Timeout.Infinite);
    }

    /// usage: thread-static [seconds]: only the note keeper, then churn.
    public static long Run(Func<bool> running)
    {
        var notes = new Thread(Keep) { IsBackground = true, Name = "notes" };
        notes.Start();
        Started.Wait();
        Console.WriteLine($"ready notes=700 tid={OsThreadId}");
        long churn = 0;
        while (running())
        {
            for (int k = 0; k < 200; k++) churn += Churn.Garbage(k);
            Thread.Sleep(5);
        }
        return churn % 7;
    }
}

public sealed class PluginEntry(int id)
{
    public readonly int Id = id;
    public readonly byte[] Data = new byte[24];
}

/// A plugin's cache: a static list, in a copy of this assembly loaded into a collectible
/// AssemblyLoadContext by `PluginHost`.
public static class PluginCache
{
    public static readonly List<PluginEntry> Entries = new();

    public static int Fill(int count)
    {
        for (int i = 0; i < count; i++) Entries.Add(new PluginEntry(i));
        return Entries.Count;
    }
}

/// usage: collectible [seconds] [entries]: loads this assembly again into a collectible
/// AssemblyLoadContext and fills that copy's `PluginCache.Entries`, then churns.
public static class PluginHost
{
    public static long Run(Func<bool> running, string[] args)
    {
        int entries = args.Length > 2 ? int.Parse(args[2]) : 3000;
        var context = new System.Runtime.Loader.AssemblyLoadContext("plugin", isCollectible: true);
        var plugin = context.LoadFromAssemblyPath(typeof(PluginHost).Assembly.Location);
        var fill = plugin.GetType("LeakApp.PluginCache")!.GetMethod("Fill")!;
        int filled = (int)fill.Invoke(null, new object[] { entries })!;
        Console.WriteLine($"ready entries={filled} collectible={context.IsCollectible}");
        long churn = 0;
        while (running())
        {
            for (int k = 0; k < 200; k++) churn += Churn.Garbage(k);
            Thread.Sleep(5);
        }
        GC.KeepAlive(context);
        return filled + churn % 7;
    }
}
