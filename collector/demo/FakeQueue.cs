using System.Text;

namespace Demo;

/// <summary>A message as a broker would deliver it: an id and a text body to parse.</summary>
public sealed class Message
{
    public required long Id { get; init; }
    public required string Body { get; init; }
}

/// <summary>Stands in for a message broker: produces order messages deterministically.</summary>
public sealed class FakeQueue(int seed)
{
    /// <summary>Distinct SKUs: exactly what the price cache holds, so once full it stays full.
    /// (With more SKUs than slots, evicted quotes that reached gen2 linger as garbage until the
    /// next full GC, and a 50-second demo may see no full GC that proves them dead.)</summary>
    public const int SkuCount = 4000;

    /// <summary>Size of the raw frame each message arrives in.</summary>
    public const int FrameBytes = 12 * 1024;

    private readonly Random _random = new(seed);
    private long _nextId = 1;

    public Message Next()
    {
        var body = new StringBuilder(256);
        long id = _nextId++;
        body.Append("id=").Append(id);
        body.Append(";customer=CUST-").Append(_random.Next(100_000).ToString("D6"));
        body.Append(";items=");
        int lines = 1 + _random.Next(3);
        for (int i = 0; i < lines; i++)
        {
            if (i > 0) body.Append(',');
            body.Append("SKU-").Append(_random.Next(SkuCount).ToString("D5")).Append(':').Append(1 + _random.Next(4));
        }
        body.Append(";note=").Append("deliver to the back door, ring twice, fragile contents", 0, 10 + _random.Next(40));
        // The broker hands over a raw frame (headers, padding); decoding it is pure churn, and
        // enough of it that gen0 collections come every few seconds, as in a busy consumer.
        var frame = new byte[FrameBytes];
        int length = Encoding.UTF8.GetBytes(body.ToString(), frame);
        return new Message { Id = id, Body = Encoding.UTF8.GetString(frame, 0, length) };
    }
}
