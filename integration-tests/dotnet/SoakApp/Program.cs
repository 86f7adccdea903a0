// Soak-test scenarios for `leakscope soak`. Every scenario runs a message worker with heavy
// churn (short-lived messages, and a sliding window of recent ones that die old, in gen1/gen2),
// plus one known shape of memory use with its own type and allocating method:
//
//   steady-leak       SoakApp.AuditRecord @ SoakApp.AuditLog.Append     ~100 kB/s, forever
//   bounded-cache     SoakApp.CacheEntry  @ SoakApp.PriceCache.Put      fills in ~27 s, then evicts
//   warmup-then-flat  SoakApp.Product     @ SoakApp.ReferenceData.Load  grows for ~25 s, then stops
//   bursts            SoakApp.BatchItem   @ SoakApp.BatchJob.Run        ~8 MB held 1.5 s every 7.3 s
//   churn             (nothing kept)
//   slow-drip         SoakApp.DripEntry   @ SoakApp.Drip.Add            ~350 B/s under heavier churn
//   native-leak       native memory       @ SoakApp.NativeBuffers.Leak  64 KiB twice a second
//                     (Marshal.AllocHGlobal, never freed), beside native churn that frees all
//   thin-leak         SoakApp.Shard<Mi, Mj> (100 types) @ SoakApp.ThinLeak.Keep  ~50 kB/h each,
//                     5 MB/h in all, under light churn that keeps no window of recent messages
//   rooted            SoakApp.Pending     held by a local of SoakApp.Rooted.Loop (a stack frame)
//                     SoakApp.Parked      held through a GCHandle kept in native memory
//   string-drip       System.String       4 a second into static SoakApp.StringDrip.AuditTrail,
//                     under heavier churn (strings everywhere: the type alone says nothing)
//
// usage: SoakApp <scenario> [seconds]   (runs until Ctrl-C/SIGTERM when seconds is omitted)
// Prints "ready" when the worker starts, "done <checksum>" and its message and allocation
// rates when it stops.
using System.Diagnostics;
using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;

namespace SoakApp;

public static class Program
{
    static volatile bool stop;

    public static int Main(string[] args)
    {
        string scenario = args.Length > 0 ? args[0] : "help";
        double seconds = args.Length > 1
            ? double.Parse(args[1], System.Globalization.CultureInfo.InvariantCulture)
            : double.PositiveInfinity;
        Console.CancelKeyPress += (_, e) => { e.Cancel = true; stop = true; };
        AppDomain.CurrentDomain.ProcessExit += (_, _) => stop = true;

        Action<double>? extra = scenario switch
        {
            "steady-leak" => AuditLog.Tick,
            "bounded-cache" => PriceCache.Tick,
            "warmup-then-flat" => ReferenceData.Tick,
            "bursts" => BatchJob.Tick,
            "churn" => _ => { },
            "slow-drip" => Drip.Tick,
            "native-leak" => NativeBuffers.Tick,
            "thin-leak" => ThinLeak.Tick,
            "rooted" => Rooted.Tick,
            "string-drip" => StringDrip.Tick,
            _ => null,
        };
        if (extra == null)
        {
            Console.Error.WriteLine("scenarios: steady-leak bounded-cache warmup-then-flat bursts churn slow-drip native-leak thin-leak rooted string-drip");
            return 2;
        }
        // Heavy churn everywhere; heavier under the slow drip, which must be found anyway. The
        // thin leak's worker is light: the census runs just after each induced GC while the
        // worker goes on, so it also counts what the worker allocated in those few ms (up to a
        // tick's messages, ~100 kB at 80 a tick) — more than a 5 MB/h leak adds between two
        // points of a one-minute soak.
        int messagesPerTick = scenario switch { "slow-drip" or "string-drip" => 160, "thin-leak" => 8, _ => 80 };
        Console.WriteLine("ready");
        var clock = Stopwatch.StartNew();
        // The thin leak is 1.4 kB/s in all: the retry window's ups and downs would drown it in a
        // one-minute soak, so that worker keeps nothing (every message dies young).
        var worker = new Worker(scenario == "thin-leak" ? 0 : 3000);
        long checksum = 0;
        while (!stop && clock.Elapsed.TotalSeconds < seconds)
        {
            double now = clock.Elapsed.TotalSeconds;
            for (int i = 0; i < messagesPerTick; i++) checksum += worker.Handle();
            extra(now);
            Thread.Sleep(10);
        }
        Console.WriteLine($"done {checksum % 1000}");
        double elapsed = clock.Elapsed.TotalSeconds;
        Console.WriteLine($"messages_per_s {worker.Handled / elapsed:F0} allocated_mb_per_s {GC.GetTotalAllocatedBytes() / 1e6 / elapsed:F1}");
        return 0;
    }
}

/// A message as a queue consumer sees it: a payload and a few strings.
public sealed class Message
{
    public long Id;
    public string Customer = "";
    public string Body = "";
    public byte[] Payload = Array.Empty<byte>();
}

/// The churn: every message is parsed, formatted and dropped; the last few thousand are kept in
/// a sliding window (a retry buffer), so they die old, after being promoted.
public sealed class Worker(int window)
{
    readonly Queue<Message> recent = new();
    long next;

    public long Handled => next;

    [MethodImpl(MethodImplOptions.NoInlining)]
    public long Handle()
    {
        long id = next++;
        var m = new Message
        {
            Id = id,
            Customer = "customer-" + (id % 997),
            Body = $"order {id} for {id % 997} amount {(id * 31) % 10000}",
            Payload = new byte[512 + (int)(id % 1536)],
        };
        m.Payload[0] = (byte)id;
        var parts = m.Body.Split(' ');
        if (window > 0)
        {
            recent.Enqueue(m);
            if (recent.Count > window) recent.Dequeue();
        }
        return parts.Length + m.Payload.Length;
    }
}

/// The steady leak: every processed batch appends audit records to a static list nobody trims.
public sealed class AuditRecord
{
    public long Id;
    public long At;
    public string Line = "";
}

public static class AuditLog
{
    static readonly List<AuditRecord> records = new();
    static long n;

    [MethodImpl(MethodImplOptions.NoInlining)]
    public static void Append()
    {
        long id = n++;
        records.Add(new AuditRecord { Id = id, At = Environment.TickCount64, Line = $"audit {id:D10} processed ok" });
    }

    // 1000 records a second (~100 B each, with their strings): ~100 kB/s, ~360 MB/h.
    public static void Tick(double now)
    {
        while (n < (long)(now * 1000)) Append();
    }
}

/// A bounded cache: fills up to its capacity in ~27 s, then evicts the oldest entry per insert.
public sealed class CacheEntry
{
    public long Key;
    public decimal Price;
    public byte[] Blob = Array.Empty<byte>();
}

public static class PriceCache
{
    const int Capacity = 40_000;
    static readonly Dictionary<long, CacheEntry> entries = new();
    static readonly Queue<long> order = new();
    static long next;

    [MethodImpl(MethodImplOptions.NoInlining)]
    public static void Put(long key)
    {
        if (entries.Count >= Capacity) entries.Remove(order.Dequeue());
        entries[key] = new CacheEntry { Key = key, Price = key % 1000, Blob = new byte[96] };
        order.Enqueue(key);
    }

    // 1500 inserts a second: full after ~27 s (≈ 7 MB), then every insert evicts one.
    public static void Tick(double now)
    {
        while (next < (long)(now * 1500)) Put(next++);
    }
}

/// Start-up growth: reference data loaded gradually for the first ~25 s, then never again.
public sealed class Product
{
    public long Sku;
    public string Name = "";
    public int[] Tiers = Array.Empty<int>();
}

public static class ReferenceData
{
    static readonly List<Product> products = new();
    const double LoadSeconds = 25;

    [MethodImpl(MethodImplOptions.NoInlining)]
    public static void Load(int count)
    {
        for (int i = 0; i < count; i++)
        {
            long sku = products.Count;
            products.Add(new Product { Sku = sku, Name = $"product {sku:D8}", Tiers = new int[16] });
        }
    }

    // 1000 products a second (~200 kB/s with their names and arrays) while loading.
    public static void Tick(double now)
    {
        long target = (long)(Math.Min(now, LoadSeconds) * 1000);
        if (products.Count < target) Load((int)(target - products.Count));
    }
}

/// Periodic bursts: a batch of ~100k items (~8 MB) built every 7.3 s, held 1.5 s, dropped.
public sealed class BatchItem
{
    public long Id;
    public long Amount;
    public string? Note;
}

public static class BatchJob
{
    static List<BatchItem>? current;
    static double startedAt = -1;
    static double nextAt = 3;

    [MethodImpl(MethodImplOptions.NoInlining)]
    public static List<BatchItem> Run()
    {
        var items = new List<BatchItem>(100_000);
        for (int i = 0; i < 100_000; i++) items.Add(new BatchItem { Id = i, Amount = i * 7 });
        return items;
    }

    public static void Tick(double now)
    {
        if (current == null && now >= nextAt)
        {
            current = Run();
            startedAt = now;
            nextAt += 7.3;
        }
        else if (current != null && now - startedAt >= 1.5)
        {
            current = null;
        }
    }
}

/// The slow drip: one wide record a second, kept forever (~350 B/s, ~1.2 MB/h) — far below
/// the sampling rate (one sample per ~100 KiB), so only an exact census sees it in minutes.
public sealed class DripEntry
{
    public long A0, A1, A2, A3, A4, A5, A6, A7, A8, A9;
    public long B0, B1, B2, B3, B4, B5, B6, B7, B8, B9;
    public long C0, C1, C2, C3, C4, C5, C6, C7, C8, C9;
    public long D0, D1, D2, D3, D4, D5, D6, D7, D8, D9;
}

public static class Drip
{
    static readonly List<DripEntry> kept = new();
    static double nextAt;

    [MethodImpl(MethodImplOptions.NoInlining)]
    public static void Add(long id) => kept.Add(new DripEntry { A0 = id, D9 = id });

    public static void Tick(double now)
    {
        if (now >= nextAt)
        {
            Add(kept.Count);
            nextAt += 1.0;
        }
    }
}

/// A native leak: unmanaged buffers kept forever (~470 MB/h), beside native churn.
public static class NativeBuffers
{
    static readonly List<IntPtr> kept = new();

    [MethodImpl(MethodImplOptions.NoInlining)]
    public static void Leak()
    {
        IntPtr p = Marshal.AllocHGlobal(64 * 1024);
        Marshal.WriteByte(p, 0, 1);
        kept.Add(p);
    }

    [MethodImpl(MethodImplOptions.NoInlining)]
    public static void Churn(int n)
    {
        for (int i = 0; i < n; i++)
        {
            IntPtr p = Marshal.AllocHGlobal(1024 + i * 64);
            Marshal.WriteByte(p, 0, 1);
            Marshal.FreeHGlobal(p);
        }
    }

    public static void Tick(double now)
    {
        Churn(20);
        while (kept.Count < (long)(now * 2)) Leak();
    }
}

/// A leak spread thinly over many types: 100 closed generic types (Shard<Mi, Mj> over ten marker
/// classes), one 80-byte object of the next type kept every 57.6 ms, round robin — each type grows
/// ~50 kB/h, below a per-type 100 kB/h gate, and the census total 5 MB/h.
public sealed class Shard<TA, TB>
{
    public long A0, A1, A2, A3, A4, A5, A6, A7;
}

public sealed class M0 { }
public sealed class M1 { }
public sealed class M2 { }
public sealed class M3 { }
public sealed class M4 { }
public sealed class M5 { }
public sealed class M6 { }
public sealed class M7 { }
public sealed class M8 { }
public sealed class M9 { }

public static class ThinLeak
{
    // Room for hours: the list's own array never grows (it would be one more growing type).
    static readonly List<object> kept = new(400_000);
    static readonly Func<object>[] makers = Makers();
    static long made;

    static Func<object>[] Makers()
    {
        Type[] tags = [typeof(M0), typeof(M1), typeof(M2), typeof(M3), typeof(M4), typeof(M5), typeof(M6), typeof(M7), typeof(M8), typeof(M9)];
        var make = typeof(ThinLeak).GetMethod(nameof(Make), System.Reflection.BindingFlags.NonPublic | System.Reflection.BindingFlags.Static)!;
        var all = new List<Func<object>>();
        foreach (var a in tags)
            foreach (var b in tags)
                all.Add(make.MakeGenericMethod(a, b).CreateDelegate<Func<object>>());
        return all.ToArray();
    }

    static object Make<TA, TB>() => new Shard<TA, TB> { A0 = 1 };

    [MethodImpl(MethodImplOptions.NoInlining)]
    public static void Keep(long i) => kept.Add(makers[i % makers.Length]());

    public static void Tick(double now)
    {
        while (made < (long)(now / 0.0576)) Keep(made++);
    }
}

/// Held from outside the heap: records kept by a long-running method's local list (its stack
/// frame is the root) and by a list only a GCHandle holds, the handle kept in native memory.
public sealed class Pending
{
    public long Id;
    public byte[] Data = new byte[64];
}

public sealed class Parked
{
    public long Id;
    public byte[] Data = new byte[64];
}

public static class Rooted
{
    static IntPtr table;
    static long parked;
    static Thread? loop;

    // A worker loop that never lets go of what it queued.
    [MethodImpl(MethodImplOptions.NoInlining)]
    static void Loop()
    {
        var pending = new List<Pending>();
        var clock = Stopwatch.StartNew();
        while (true)
        {
            while (pending.Count < (long)(clock.Elapsed.TotalSeconds * 200))
                pending.Add(new Pending { Id = pending.Count });
            Thread.Sleep(20);
            GC.KeepAlive(pending);
        }
    }

    public static void Tick(double now)
    {
        if (loop == null)
        {
            loop = new Thread(Loop) { IsBackground = true, Name = "rooted-loop" };
            loop.Start();
            var handle = GCHandle.Alloc(new List<Parked>());
            table = Marshal.AllocHGlobal(IntPtr.Size);
            Marshal.WriteIntPtr(table, GCHandle.ToIntPtr(handle));
        }
        var list = (List<Parked>)GCHandle.FromIntPtr(Marshal.ReadIntPtr(table)).Target!;
        while (parked < (long)(now * 200))
            list.Add(new Parked { Id = parked++ });
    }
}

/// A slow leak of the commonest type: audit strings kept in a static list.
public static class StringDrip
{
    public static readonly List<string> AuditTrail = new();
    static long next;

    [MethodImpl(MethodImplOptions.NoInlining)]
    public static void Record(long i) => AuditTrail.Add($"audit {i:D8} user={i % 97} action=read");

    public static void Tick(double now)
    {
        while (next < (long)(now * 4)) Record(next++);
    }
}
