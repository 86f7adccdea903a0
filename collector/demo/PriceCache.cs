using System.Runtime.CompilerServices;

namespace Demo;

public sealed record PriceQuote(string Sku, decimal Price, byte[] History);

/// <summary>
/// A bounded cache: at most <c>capacity</c> quotes, oldest evicted first. It fills during the
/// first seconds and then stays flat. Memory that grows and then plateaus is not a leak.
/// A note for real caches that do evict: their evicted entries are often in gen2 already and
/// look alive until the next full GC; compare across full GCs before calling that a leak.
/// </summary>
public sealed class PriceCache(int capacity)
{
    private readonly Dictionary<string, PriceQuote> _quotes = new();
    private readonly Queue<string> _insertionOrder = new();

    public int Count => _quotes.Count;

    [MethodImpl(MethodImplOptions.NoInlining)]
    public PriceQuote Get(string sku)
    {
        if (_quotes.TryGetValue(sku, out var cached)) return cached;
        PriceQuote quote = Load(sku);
        _quotes[sku] = quote;
        _insertionOrder.Enqueue(sku);
        if (_quotes.Count > capacity) _quotes.Remove(_insertionOrder.Dequeue());
        return quote;
    }

    [MethodImpl(MethodImplOptions.NoInlining)]
    private static PriceQuote Load(string sku)
    {
        // A price history blob per quote: about 1 kB each, so the full cache is ~4-5 MB.
        var history = new byte[1024];
        history[0] = (byte)sku.Length;
        decimal price = 1 + (Math.Abs(sku.GetHashCode()) % 10_000) / 100m;
        return new PriceQuote(sku, price, history);
    }
}
