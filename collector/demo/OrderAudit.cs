using System.Runtime.CompilerServices;

namespace Demo;

/// <summary>
/// THE BUG: an in-memory audit trail that nothing ever trims. Every handled order adds a string
/// that lives as long as the process, a few MB per minute at the demo's rate.
/// </summary>
public static class OrderAudit
{
    private static readonly List<string> s_entries = new();

    public static int Count => s_entries.Count;

    [MethodImpl(MethodImplOptions.NoInlining)]
    public static void Record(Order order)
    {
        s_entries.Add($"{DateTime.UtcNow:O} order={order.Id} customer={order.Customer} lines={order.Lines.Count} total={order.Total:F2}");
    }
}
