using System.Runtime.CompilerServices;
using System.Text;

namespace Demo;

public sealed record OrderLine(string Sku, int Quantity, decimal UnitPrice);

public sealed record Order(long Id, string Customer, IReadOnlyList<OrderLine> Lines, decimal Total);

/// <summary>Handles one message: parse (churn), price through the cache, audit (the leak).</summary>
public sealed class OrderWorker(PriceCache prices)
{
    public int CacheCount => prices.Count;

    [MethodImpl(MethodImplOptions.NoInlining)]
    public void Handle(Message message)
    {
        Order order = Parse(message);
        string receipt = FormatReceipt(order);
        if (receipt.Length == 0) throw new InvalidOperationException("empty receipt");
        OrderAudit.Record(order);
    }

    /// <summary>Pure churn: every string and array made here dies with the message.</summary>
    [MethodImpl(MethodImplOptions.NoInlining)]
    private Order Parse(Message message)
    {
        string customer = "";
        var lines = new List<OrderLine>();
        foreach (string field in message.Body.Split(';'))
        {
            string[] kv = field.Split('=', 2);
            if (kv.Length != 2) continue;
            switch (kv[0])
            {
                case "customer":
                    customer = kv[1];
                    break;
                case "items":
                    foreach (string item in kv[1].Split(','))
                    {
                        string[] parts = item.Split(':');
                        PriceQuote quote = prices.Get(parts[0]);
                        lines.Add(new OrderLine(parts[0], int.Parse(parts[1]), quote.Price));
                    }
                    break;
            }
        }
        decimal total = 0;
        foreach (var line in lines) total += line.UnitPrice * line.Quantity;
        return new Order(message.Id, customer, lines, total);
    }

    [MethodImpl(MethodImplOptions.NoInlining)]
    private static string FormatReceipt(Order order)
    {
        var sb = new StringBuilder();
        sb.AppendLine($"Order {order.Id} for {order.Customer}");
        foreach (var line in order.Lines)
            sb.AppendLine($"  {line.Quantity} x {line.Sku} @ {line.UnitPrice:F2} = {line.Quantity * line.UnitPrice:F2}");
        sb.AppendLine($"Total {order.Total:F2}");
        return sb.ToString();
    }
}
