// A heap of about N live objects with edges, held until the process is told to quit, for
// bench/census_pause.py (how long a snapshot of the whole heap pauses the application:
// leakscope's census, dotnet-gcdump) and bench/retention_paths.py (what keeps planted leaks
// alive, found on a heap this size).
//
// usage: HeapBuilder <objects> [deadline_s (0 = none)] [ticker_threshold_ms (0 = no ticker)] [leaks (0/1)]
//
// The heap: customers, each with a name and a List<Order> of 20 orders; each order with a code
// string, a link to its owner and to the previous order, and an array of two order lines that
// point at shared SKU strings; a Dictionary<long, Order> indexes every order. Every object is
// reachable, so a full GC keeps all of them.
//
// With leaks = 1, a fifth of the objects are four planted leaks instead (see Leaks):
//   closures    static Leaks.Retries, a List<Func<int>> of closures, each capturing an int[]
//   cache       static Leaks.ResponseCache, a ConcurrentDictionary<string, Response>
//   event       static event Clock.Tick, never unsubscribed by its Subscribers (each with a payload)
//   registry    static Registry<Widget>.Items, a generic class's static List<Widget>
//
// stdout, one line each:
//   ready <objects allocated> <managed heap bytes after a full compacting GC> <customers> <orders>
//   leaks <closures> <cache entries> <subscribers> <widgets>   (with leaks = 1, before ready)
//   gap <unix ms at its end> <ms>       the ticker thread (1 ms sleeps) was held up this long
//   stats <unix ms> <GC total pause ms> <gen0> <gen1> <gen2 collections> <heap bytes>
// stdin commands: "stats", "quit".
using System.Collections.Concurrent;
using System.Diagnostics;
using System.Globalization;
using System.Runtime.CompilerServices;

namespace HeapBuilder;

public sealed class Customer
{
    public int Id;
    public string Name = "";
    public List<Order> Orders = null!;
}

public sealed class Order
{
    public long Id;
    public string Code = "";
    public Customer Owner = null!;
    public Order? Previous;
    public OrderLine[] Lines = null!;
    public DateTime Created;
}

public sealed class OrderLine
{
    public string Sku = "";
    public int Quantity;
    public decimal Price;
}

public static class Program
{
    const int OrdersPerCustomer = 20;
    const int LinesPerOrder = 2;
    const int SkuCount = 1024;
    // Objects per customer: the customer, its name, its List<Order> and the list's array, and per
    // order: the order, its code, its line array and its lines.
    const int PerCustomer = 4 + OrdersPerCustomer * (3 + LinesPerOrder);

    // The roots: static, so everything stays reachable.
    static List<Customer> customers = new();
    static Dictionary<long, Order> index = new();
    static string[] skus = Array.Empty<string>();

    public static int Main(string[] args)
    {
        var inv = CultureInfo.InvariantCulture;
        long target = args.Length > 0 ? long.Parse(args[0].Replace("_", ""), inv) : 1_000_000;
        double deadline = args.Length > 1 ? double.Parse(args[1], inv) : 0;
        double threshold = args.Length > 2 ? double.Parse(args[2], inv) : 0;
        bool leaks = args.Length > 3 && args[3] == "1";

        long planted = 0;
        if (leaks)
        {
            planted = Leaks.Plant(target / 5);
            Console.WriteLine($"leaks {Leaks.Retries.Count} {Leaks.ResponseCache.Count} {Clock.Subscribers} {Registry<Widget>.Items.Count}");
        }
        long allocated = planted + Build(target - planted);
        long orders = index.Count;
        // Settle: everything promoted to gen2 and compacted, so both tools see the same heap.
        GC.Collect(2, GCCollectionMode.Forced, blocking: true, compacting: true);
        GC.WaitForPendingFinalizers();
        GC.Collect(2, GCCollectionMode.Forced, blocking: true, compacting: true);
        if (threshold > 0)
            new Thread(() => Ticker(threshold)) { IsBackground = true, Name = "ticker" }.Start();
        Console.WriteLine($"ready {allocated} {GC.GetTotalMemory(false)} {customers.Count} {orders}");

        new Thread(Commands) { IsBackground = true, Name = "commands" }.Start();
        var clock = Stopwatch.StartNew();
        while (deadline <= 0 || clock.Elapsed.TotalSeconds < deadline)
            Thread.Sleep(100);
        GC.KeepAlive(customers);
        GC.KeepAlive(index);
        return 0;
    }

    [MethodImpl(MethodImplOptions.NoInlining)]
    static long Build(long target)
    {
        long count = 0;
        skus = new string[SkuCount];
        count++;
        for (int i = 0; i < SkuCount; i++, count++)
            skus[i] = $"SKU-{i * 7919 % 100000:D6}";
        // Roots: the customer list and its array; the dictionary, its buckets and its entries.
        long customerCount = Math.Max(1, (target - SkuCount - 6) / PerCustomer);
        customers = new List<Customer>((int)customerCount);
        index = new Dictionary<long, Order>((int)(customerCount * OrdersPerCustomer));
        count += 5;
        var rng = new Random(42);
        long orderId = 0;
        for (int c = 0; c < customerCount; c++)
        {
            var customer = new Customer { Id = c, Name = $"Customer {c:D7} of region {c % 37}" };
            customer.Orders = new List<Order>(OrdersPerCustomer);
            count += 4;
            Order? previous = null;
            for (int o = 0; o < OrdersPerCustomer; o++)
            {
                var lines = new OrderLine[LinesPerOrder];
                for (int l = 0; l < LinesPerOrder; l++)
                    lines[l] = new OrderLine { Sku = skus[rng.Next(SkuCount)], Quantity = 1 + rng.Next(9), Price = rng.Next(100, 100000) / 100m };
                var order = new Order
                {
                    Id = orderId,
                    // Codes of varied length, like real identifiers.
                    Code = rng.Next(4) == 0 ? $"ORD-{orderId:D9}-{c:X}-priority" : $"ORD-{orderId:D9}",
                    Owner = customer,
                    Previous = previous,
                    Lines = lines,
                    Created = new DateTime(2026, 1, 1).AddSeconds(orderId),
                };
                count += 3 + LinesPerOrder;
                customer.Orders.Add(order);
                index.Add(orderId, order);
                previous = order;
                orderId++;
            }
            customers.Add(customer);
        }
        return count;
    }

    static long UnixMs() => DateTimeOffset.UtcNow.ToUnixTimeMilliseconds();

    /// Sleeps 1 ms at a time and reports every wake-up that came later than `threshold` ms after
    /// the previous one: a thread returning from a sleep cannot run managed code while the
    /// runtime is suspended, so this is the pause as the application feels it.
    static void Ticker(double threshold)
    {
        var clock = Stopwatch.StartNew();
        long last = clock.ElapsedTicks;
        double toMs = 1000.0 / Stopwatch.Frequency;
        while (true)
        {
            Thread.Sleep(1);
            long now = clock.ElapsedTicks;
            double gap = (now - last) * toMs;
            // The next interval starts now, not after the print: a pause that begins while this
            // thread is writing still shows up, in the next gap.
            last = now;
            if (gap >= threshold)
                Console.WriteLine(string.Create(CultureInfo.InvariantCulture, $"gap {UnixMs()} {gap:F3}"));
        }
    }

    static void Commands()
    {
        string? line;
        while ((line = Console.ReadLine()) != null)
        {
            switch (line.Trim())
            {
                case "stats":
                    Console.WriteLine(string.Create(CultureInfo.InvariantCulture,
                        $"stats {UnixMs()} {GC.GetTotalPauseDuration().TotalMilliseconds:F3} {GC.CollectionCount(0)} {GC.CollectionCount(1)} {GC.CollectionCount(2)} {GC.GetTotalMemory(false)}"));
                    break;
                case "quit":
                    Environment.Exit(0);
                    break;
            }
        }
    }
}

/// A cached response: a user type with a payload string.
public sealed class Response
{
    public string Body = "";
    public int Status;
}

/// Subscribes to the static event in its constructor and never unsubscribes.
public sealed class Subscriber
{
    public readonly byte[] Payload;
    public int Ticks;

    public Subscriber(int payload)
    {
        Payload = new byte[payload];
        Clock.Tick += OnTick;
    }

    void OnTick(object? sender, EventArgs e) => Ticks++;
}

public static class Clock
{
    public static event EventHandler? Tick;
    public static int Subscribers => Tick?.GetInvocationList().Length ?? 0;
}

public sealed class Widget
{
    public string Name = "";
    public long Serial;
}

/// A registry per item type: a generic class's static field, one per instantiation.
public static class Registry<T>
{
    public static readonly List<T> Items = new();
}

/// Four leaks of about `objects` objects together, shaped like the ones users meet.
public static class Leaks
{
    public static readonly List<Func<int>> Retries = new();
    public static readonly ConcurrentDictionary<string, Response> ResponseCache = new();
    const int MaxSubscribers = 30_000;

    public static long Plant(long objects)
    {
        long quarter = objects / 4;
        long count = 0;
        // Closures: a Func<int>, its display class and the captured int[] (3 objects).
        for (long i = 0; i < quarter / 3; i++, count += 3)
        {
            int[] attempts = new int[4];
            attempts[0] = (int)i;
            Retries.Add(() => attempts[0] + 1);
        }
        // Cache: the dictionary's node, the key, the response and its body (4 objects).
        for (long i = 0; i < quarter / 4; i++, count += 4)
            ResponseCache[$"GET /api/items/{i}"] = new Response { Body = $"{{\"id\":{i}}}", Status = 200 };
        // Event: the subscriber, its payload and its handler (3 objects); += copies the invocation
        // list each time, so their number is bounded.
        long subscribers = Math.Min(quarter / 3, MaxSubscribers);
        for (long i = 0; i < subscribers; i++, count += 3)
            _ = new Subscriber(64);
        // Registry: the widget and its name (2 objects).
        for (long i = 0; i < quarter / 2; i++, count += 2)
            Registry<Widget>.Items.Add(new Widget { Name = $"widget-{i}", Serial = i });
        return count;
    }
}
