// HeapApp: builds a heap of a few dozen types with known counts, then either holds it still
// (`hold SECONDS`: no allocation at all, so two heap counts taken moments apart must agree) or
// keeps leaking one type from one method under churn (`grow SECONDS`). `serve SECONDS` holds it
// like a service that ends gracefully on SIGTERM/SIGINT (as the generic host does): it then
// prints its last line and exits with code 42.
using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;

namespace HeapApp;

public sealed class Customer
{
    public required string Name { get; init; }
    public required Address Home { get; init; }
    public List<Order> Orders { get; } = new();
}

public sealed class Address
{
    public required string Street { get; init; }
    public int Zip { get; init; }
}

public sealed record Order(int Id, decimal Amount, OrderLine[] Lines);

public readonly record struct OrderLine(int Sku, int Quantity);

public sealed class Invoice
{
    public required Order Order { get; init; }
    public byte[] Pdf { get; init; } = Array.Empty<byte>();
}

public sealed class AuditEvent
{
    public required string What { get; init; }
    public DateTime At { get; init; }
    public object? Payload { get; init; }
}

/// The leaking type of `grow`: nothing else it holds is per-instance, so it is the one type
/// whose bytes climb.
public sealed class SessionState
{
    public required string User { get; init; }
    public long Opened { get; init; }
    public long Expires { get; init; }
    public Guid Id { get; init; }
    public long Hits, Misses, BytesIn, BytesOut;
}

/// The slow leak of `slowleak`: small, rare, easy for allocation sampling to miss.
public sealed class Subscription
{
    public required int Topic { get; init; }
    public long Since { get; init; }
}

public static class World
{
    public static readonly List<Subscription> Subscriptions = new();

    public static readonly Dictionary<string, Customer> Customers = new();
    public static readonly List<Invoice> Invoices = new();
    public static readonly Queue<AuditEvent> Audit = new();
    public static readonly HashSet<long> SeenIds = new();
    public static readonly List<int[]> Buckets = new();
    public static readonly List<SessionState> Sessions = new();

    public static void Build(int scale)
    {
        int orderId = 0;
        for (int c = 0; c < 2_000 * scale; c++)
        {
            var customer = new Customer
            {
                Name = $"customer-{c:D6}",
                Home = new Address { Street = $"{c % 977} Main Street", Zip = 10_000 + c % 89_999 },
            };
            for (int o = 0; o < 1 + c % 5; o++)
            {
                var lines = new OrderLine[1 + (o + c) % 4];
                for (int l = 0; l < lines.Length; l++) lines[l] = new OrderLine(l * 31 + c, 1 + l);
                var order = new Order(orderId++, (c * 7 + o) % 1000, lines);
                customer.Orders.Add(order);
                if (order.Id % 3 == 0) Invoices.Add(new Invoice { Order = order, Pdf = new byte[64 + order.Id % 700] });
            }
            Customers[customer.Name] = customer;
        }
        for (int a = 0; a < 3_000 * scale; a++)
            Audit.Enqueue(new AuditEvent { What = $"event {a}", At = DateTime.UnixEpoch.AddSeconds(a), Payload = a % 2 == 0 ? a : null });
        for (long id = 0; id < 5_000 * scale; id++) SeenIds.Add(id * 7919);
        for (int b = 0; b < 400 * scale; b++) Buckets.Add(new int[16 + b % 48]);
    }

    [MethodImpl(MethodImplOptions.NoInlining)]
    public static void Subscribe(int topic) => Subscriptions.Add(new Subscription { Topic = topic, Since = topic * 10L });

    [MethodImpl(MethodImplOptions.NoInlining)]
    public static void OpenSession(int i) =>
        Sessions.Add(new SessionState { User = "anonymous", Opened = i, Expires = i + 3600, Id = new Guid(i, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0) });
}

public static class Program
{
    public static int Main(string[] args)
    {
        string mode = args.Length > 0 ? args[0] : "hold";
        double seconds = args.Length > 1 ? double.Parse(args[1]) : 60;
        int scale = args.Length > 2 ? int.Parse(args[2]) : 10;
        World.Build(scale);
        GC.Collect();
        var stop = new ManualResetEventSlim();
        using var onTerm = mode == "serve" ? PosixSignalRegistration.Create(PosixSignal.SIGTERM, ctx => { ctx.Cancel = true; stop.Set(); }) : null;
        using var onInt = mode == "serve" ? PosixSignalRegistration.Create(PosixSignal.SIGINT, ctx => { ctx.Cancel = true; stop.Set(); }) : null;
        Console.WriteLine($"ready {World.Customers.Count}");
        var until = DateTime.UtcNow.AddSeconds(seconds);
        long churn = 0;
        int i = 0;
        while (DateTime.UtcNow < until && !stop.IsSet)
        {
            if (mode == "slowleak")
            {
                // 20 small objects a second kept (~640 B/s) under ~20 MB/s of garbage.
                World.Subscribe(i++);
                for (int k = 0; k < 400; k++) churn += new byte[2000 + k].Length + $"message {k}".Length;
                Thread.Sleep(50);
            }
            else if (mode == "grow")
            {
                for (int k = 0; k < 50; k++)
                {
                    World.OpenSession(i++);
                    churn += $"request {k} {i}".Length + new byte[100 + k].Length;
                }
                Thread.Sleep(5);
            }
            else if (mode == "serve")
            {
                stop.Wait(50);
            }
            else
            {
                // Holding still: no allocation at all.
                Thread.Sleep(50);
            }
        }
        Console.WriteLine($"done {World.Sessions.Count} {World.Subscriptions.Count} {churn % 7}");
        return stop.IsSet ? 42 : 0;
    }
}
