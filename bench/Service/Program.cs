// A small order service: what a typical JSON API does per request — route, read the query,
// look things up in an in-memory cache (filling it on a miss), build a response object graph
// and serialize it with System.Text.Json.
//
// usage: dotnet Service.dll [--urls http://127.0.0.1:PORT] [--leak [N]]
// With --leak, every order request (or one in N) also records an audit line in a static list
// that is never trimmed: a planted leak, for checking that leakscope names its call site under
// load.
// Prints "ready" once it listens.
using System.Diagnostics;
using System.Runtime.InteropServices;
using System.Text.Json;
using System.Text.Json.Serialization;
using Microsoft.Extensions.Caching.Memory;

int leak = Array.IndexOf(args, "--leak");
if (leak >= 0)
{
    bool counted = leak + 1 < args.Length && int.TryParse(args[leak + 1], out AuditTrail.OneIn) && AuditTrail.OneIn > 0;
    if (!counted) AuditTrail.OneIn = 1;
    args = args.Where((_, i) => i != leak && !(counted && i == leak + 1)).ToArray();
}
var builder = WebApplication.CreateSlimBuilder(args);
builder.Logging.ClearProviders();
builder.Services.AddMemoryCache(o => o.SizeLimit = 20_000);
builder.Services.ConfigureHttpJsonOptions(o => o.SerializerOptions.TypeInfoResolverChain.Insert(0, ServiceJson.Default));
var app = builder.Build();

// Benchmarks comparing phases inside one process (bench/service_ab.py): requests, CPU time and
// the time each request spends in the app, per 100 ms on the agent's clock.
if (Environment.GetEnvironmentVariable("SERVICE_TICKS") is { Length: > 0 } ticksPath)
{
    var ticks = new RequestTicks(ticksPath);
    app.Use(async (context, next) =>
    {
        long started = Stopwatch.GetTimestamp();
        // The client's send time (bench/Service/wrk_timed.lua), echoed so it can time the
        // response as it sees it.
        if (context.Request.Headers.TryGetValue("X-Sent", out var sent))
            context.Response.Headers["X-Sent"] = sent;
        await next(context);
        ticks.Record(Stopwatch.GetElapsedTime(started));
    });
    ticks.Start();
    app.Lifetime.ApplicationStopping.Register(ticks.Write);
}

app.MapGet("/orders/{customer:int}", (int customer, int? page, IMemoryCache cache) =>
{
    var orders = Catalog.OrdersOf(customer % 5000, cache);
    int from = (page ?? 0) * 10 % Math.Max(orders.Count, 1);
    var pageItems = orders.Skip(from).Take(10).Select(o => new OrderView(o.Id, o.Sku, o.Quantity * o.UnitPrice, o.Tags)).ToList();
    AuditTrail.Record(customer, pageItems.Count);
    return Results.Json(new OrdersPage(customer, from, orders.Count, pageItems), ServiceJson.Default.OrdersPage);
});

app.MapPost("/quote", (QuoteRequest request) =>
{
    var lines = request.Items.Select(i => new QuoteLine(i.Sku, i.Quantity, Catalog.Price(i.Sku) * i.Quantity)).ToArray();
    return Results.Json(new Quote(Guid.NewGuid().ToString("N"), lines, lines.Sum(l => l.Total)), ServiceJson.Default.Quote);
});

app.MapGet("/health", () => "ok");

app.Lifetime.ApplicationStarted.Register(() => Console.WriteLine("ready"));
app.Run();

static class Catalog
{
    static readonly string[] Skus = Enumerable.Range(0, 500).Select(i => $"SKU-{i:D5}").ToArray();

    public static decimal Price(string sku) => 1 + (uint)sku.GetHashCode() % 10_000 / 100m;

    public static List<Order> OrdersOf(int customer, IMemoryCache cache) =>
        cache.GetOrCreate(customer, entry =>
        {
            entry.Size = 1;
            entry.SlidingExpiration = TimeSpan.FromSeconds(30);
            var random = new Random(customer);
            return Enumerable.Range(0, 20 + customer % 20).Select(i => new Order(
                customer * 1000L + i,
                Skus[random.Next(Skus.Length)],
                random.Next(1, 9),
                Price(Skus[random.Next(Skus.Length)]),
                new[] { "web", i % 3 == 0 ? "priority" : "standard" })).ToList();
        })!;
}

/// The planted leak: one audit line per order request (or one in `OneIn`), kept forever.
static class AuditTrail
{
    /// 0: no leak.
    public static int OneIn;
    static readonly List<string> Lines = new();
    static long _requests;

    public static void Record(int customer, int count)
    {
        if (OneIn == 0 || (OneIn > 1 && Interlocked.Increment(ref _requests) % OneIn != 0)) return;
        var line = $"{DateTime.UtcNow:O} customer={customer} items={count}";
        lock (Lines) Lines.Add(line);
    }
}

/// Per 100 ms tick: the monotonic clock and the process's CPU time at its start (clock_gettime,
/// the agent's clock), requests finished, and a histogram of their time in the app (8 buckets per
/// doubling from 1 µs). Made beforehand, written at shutdown: nothing allocates per request.
sealed class RequestTicks(string path)
{
    public const int Buckets = 8 * 21;
    const int Capacity = 6000; // 10 minutes
    readonly long[] _at = new long[Capacity], _cpu = new long[Capacity], _done = new long[Capacity];
    readonly long[] _histogram = new long[Capacity * Buckets];
    long _requests;
    volatile int _tick;
    int _recorded;

    public void Record(TimeSpan inApp)
    {
        Interlocked.Increment(ref _requests);
        int tick = _tick;
        if (tick >= Capacity) return;
        double us = Math.Max(inApp.TotalMicroseconds, 1);
        int bucket = Math.Min((int)(Math.Log2(us) * 8), Buckets - 1);
        Interlocked.Increment(ref _histogram[tick * Buckets + bucket]);
    }

    public void Start() => new Thread(() =>
    {
        for (int n = 0; n < Capacity; n++)
        {
            (_at[n], _cpu[n], _done[n]) = (Clock(1), Clock(2), Interlocked.Read(ref _requests));
            _recorded = n + 1;
            _tick = n;
            Thread.Sleep(100);
        }
        _tick = Capacity;
    }) { IsBackground = true, Name = "request-ticks" }.Start();

    public void Write()
    {
        using var w = new StreamWriter(path);
        for (int n = 0; n < _recorded; n++)
        {
            w.Write($"{_at[n]} {_done[n]} {_cpu[n]}");
            for (int b = 0; b < Buckets; b++) w.Write($" {Volatile.Read(ref _histogram[n * Buckets + b])}");
            w.WriteLine();
        }
    }

    [StructLayout(LayoutKind.Sequential)]
    struct Timespec { public long Seconds; public long Nanos; }

    [DllImport("libc", EntryPoint = "clock_gettime")]
    static extern int ClockGettime(int clock, out Timespec ts);

    /// CLOCK_MONOTONIC (1) or CLOCK_PROCESS_CPUTIME_ID (2), in ns.
    static long Clock(int clock) => ClockGettime(clock, out var ts) == 0 ? ts.Seconds * 1_000_000_000 + ts.Nanos : -1;
}

record Order(long Id, string Sku, int Quantity, decimal UnitPrice, string[] Tags);
record OrderView(long Id, string Sku, decimal Total, string[] Tags);
record OrdersPage(int Customer, int From, int Total, List<OrderView> Items);
record QuoteItem(string Sku, int Quantity);
record QuoteRequest(List<QuoteItem> Items);
record QuoteLine(string Sku, int Quantity, decimal Total);
record Quote(string Id, QuoteLine[] Lines, decimal Total);

[JsonSerializable(typeof(OrdersPage))]
[JsonSerializable(typeof(QuoteRequest))]
[JsonSerializable(typeof(Quote))]
partial class ServiceJson : JsonSerializerContext;
