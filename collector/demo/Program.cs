// The leakscope demo worker: a queue consumer with three kinds of memory behaviour, so that
// leakscope has something real to tell apart.
//
//   1. Churn  - every message arrives as a 12 kB raw frame and allocates temporaries (strings,
//               arrays, builders) that die young: ~6 MB/s of allocation, no growth. Never a leak.
//   2. Cache  - PriceCache keeps at most 4000 quotes and evicts the oldest: it fills, then
//               plateaus. Not a leak.
//   3. Leak   - OrderAudit.Record appends a string per order to a static list that nobody ever
//               trims: a few MB per minute, forever. This is the one to find.
//
// Usage: dotnet Demo.dll [--rate ORDERS_PER_SECOND] [--seconds N]
// Stops cleanly on SIGINT/SIGTERM (leakscope stops it with SIGINT when the demo time is up).

using System.Diagnostics;
using System.Globalization;
using System.Runtime.InteropServices;

namespace Demo;

public static class Program
{
    public static int Main(string[] args)
    {
        int ratePerSecond = 500;
        double seconds = double.PositiveInfinity;
        for (int i = 0; i + 1 < args.Length; i++)
        {
            if (args[i] == "--rate") ratePerSecond = int.Parse(args[i + 1], CultureInfo.InvariantCulture);
            if (args[i] == "--seconds") seconds = double.Parse(args[i + 1], CultureInfo.InvariantCulture);
        }

        using var stop = new CancellationTokenSource();
        using var onInt = PosixSignalRegistration.Create(PosixSignal.SIGINT, ctx => { ctx.Cancel = true; stop.Cancel(); });
        using var onTerm = PosixSignalRegistration.Create(PosixSignal.SIGTERM, ctx => { ctx.Cancel = true; stop.Cancel(); });

        var queue = new FakeQueue(seed: 42);
        var worker = new OrderWorker(new PriceCache(capacity: 4000));
        var clock = Stopwatch.StartNew();
        long handled = 0;
        var nextReport = TimeSpan.FromSeconds(5);
        Console.WriteLine($"demo worker: consuming ~{ratePerSecond} orders/s; Ctrl-C to stop");

        while (!stop.IsCancellationRequested && clock.Elapsed.TotalSeconds < seconds)
        {
            long due = (long)(clock.Elapsed.TotalSeconds * ratePerSecond);
            while (handled < due)
            {
                worker.Handle(queue.Next());
                handled++;
            }
            if (clock.Elapsed >= nextReport)
            {
                Console.WriteLine(
                    $"demo worker: {clock.Elapsed.TotalSeconds:F0}s, {handled} orders, " +
                    $"audit log {OrderAudit.Count} entries, price cache {worker.CacheCount} quotes, " +
                    $"GC heap {GC.GetTotalMemory(false) / 1_000_000.0:F1} MB");
                nextReport += TimeSpan.FromSeconds(5);
            }
            Thread.Sleep(10);
        }
        Console.WriteLine($"demo worker: stopped after {handled} orders");
        return 0;
    }
}
