// Allocation sites of many shapes, all running at once for a few seconds, each allocating a few
// MB/s so that allocation sampling meets every one of them many times.
//
// usage: StackShapes [seconds] [shape,shape,...]   (default: all shapes)
// Prints "ready" when the shapes start and "done <checksum>" at the end.
using System.Diagnostics;
using System.Reflection;
using System.Reflection.Emit;
using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;

namespace StackShapes;

public static class Program
{
    public static volatile object? Sink;

    public static int Main(string[] args)
    {
        double seconds = args.Length > 0 ? double.Parse(args[0], System.Globalization.CultureInfo.InvariantCulture) : 8;
        var clock = Stopwatch.StartNew();
        bool Running() => clock.Elapsed.TotalSeconds < seconds;
        Console.WriteLine("ready");
        var all = new Dictionary<string, Func<Func<bool>, long>>
        {
            ["tiered"] = Tiered.Run, ["osr"] = Osr.Run, ["generics"] = Generics.Run, ["lambdas"] = Lambdas.Run,
            ["handlers"] = Handlers.Run, ["tiny"] = Tiny.Run, ["runtime"] = ThroughRuntime.Run,
            ["callbacks"] = Callbacks.Run, ["collectible"] = Collectible.Run,
            ["async"] = running => Async.Run(running).GetAwaiter().GetResult(),
        };
        var chosen = args.Length > 1 ? args[1].Split(',') : all.Keys.ToArray();
        var threads = chosen.Select(name => new Thread(() => Sink = all[name](Running))).ToList();
        threads.ForEach(t => t.Start());
        long total = 0;
        threads.ForEach(t => t.Join());
        Console.WriteLine($"done {total & 1}");
        return 0;
    }

    /// Paces a shape: a burst of work, then a short sleep, so that nine shapes share two cores.
    public static void Pace(int round)
    {
        if (round % 64 == 0) Thread.Sleep(1);
    }
}

public sealed record Order(int Id, string Customer, decimal Amount);

/// Methods called often enough to be recompiled at tier 1 (with PGO), the allocation in the callee.
public static class Tiered
{
    [MethodImpl(MethodImplOptions.NoInlining)]
    static Order MakeOrder(int i) => new Order(i, "customer-" + (i % 100), i % 977);

    [MethodImpl(MethodImplOptions.NoInlining)]
    static int Work(int i)
    {
        var order = MakeOrder(i);
        var list = new List<Order>(2) { order };
        return list.Count + order.Customer.Length;
    }

    public static long Run(Func<bool> running)
    {
        long sum = 0;
        for (int round = 0; running(); round++)
        {
            for (int i = 0; i < 200; i++) sum += Work(round * 200 + i);
            Program.Pace(round);
        }
        return sum;
    }
}

/// A long-running loop in a method entered once: the JIT moves it to an OSR version mid-loop.
public static class Osr
{
    public static long Run(Func<bool> running)
    {
        long sum = 0;
        int round = 0;
        while (running())
        {
            for (int i = 0; i < 200; i++)
            {
                var buffer = new byte[48 + i % 64];
                buffer[0] = (byte)i;
                sum += buffer.Length;
            }
            Program.Pace(round++);
        }
        return sum;
    }
}

/// Generic code: shared over reference types (one body for all of them), and per value type.
public static class Generics
{
    [MethodImpl(MethodImplOptions.NoInlining)]
    static List<T> Repeat<T>(T item, int n)
    {
        var list = new List<T>(n);
        for (int i = 0; i < n; i++) list.Add(item);
        return list;
    }

    sealed class Cache<TKey, TValue> where TKey : notnull
    {
        readonly Dictionary<TKey, TValue> _map = new();

        [MethodImpl(MethodImplOptions.NoInlining)]
        public KeyValuePair<TKey, TValue>[] Snapshot(TKey key, TValue value)
        {
            _map[key] = value;
            return _map.ToArray();
        }
    }

    public static long Run(Func<bool> running)
    {
        long sum = 0;
        var strings = new Cache<string, string>();
        var numbers = new Cache<int, long>();
        for (int round = 0; running(); round++)
        {
            for (int i = 0; i < 50; i++)
            {
                sum += Repeat("item", 8).Count + Repeat(i, 8).Count;
                sum += strings.Snapshot("k" + (i % 4), "v").Length + numbers.Snapshot(i % 4, i).Length;
            }
            Program.Pace(round);
        }
        return sum;
    }
}

/// Lambdas and closures, called through delegates and LINQ.
public static class Lambdas
{
    public static long Run(Func<bool> running)
    {
        long sum = 0;
        int captured = 7;
        Func<int, string> format = i => $"row {i} of {captured}";
        Func<int, int[]> make = static n => new int[n];
        for (int round = 0; running(); round++)
        {
            sum += Enumerable.Range(0, 40).Select(i => format(i)).Sum(s => s.Length);
            for (int i = 0; i < 40; i++) sum += make(16 + i).Length;
            Program.Pace(round);
        }
        return sum;
    }
}

/// Allocations inside exception handlers (funclets): catch, finally, and a filter.
public static class Handlers
{
    [MethodImpl(MethodImplOptions.NoInlining)]
    static void Fail(int i) => throw new InvalidOperationException("failed " + i);

    [MethodImpl(MethodImplOptions.NoInlining)]
    static string CatchAndDescribe(int i)
    {
        try
        {
            Fail(i);
            return "";
        }
        catch (InvalidOperationException e) when (new string('f', 8 + i % 8).Length > 0)
        {
            return e.Message + " handled " + new string('x', 64);
        }
    }

    [MethodImpl(MethodImplOptions.NoInlining)]
    static int CleanUp(int i)
    {
        int[]? scratch = null;
        try
        {
            scratch = new int[4];
            return scratch.Length;
        }
        finally
        {
            Program.Sink = new int[24 + i % 16];
        }
    }

    public static long Run(Func<bool> running)
    {
        long sum = 0;
        for (int round = 0; running(); round++)
        {
            for (int i = 0; i < 20; i++) sum += CatchAndDescribe(i).Length;
            for (int i = 0; i < 200; i++) sum += CleanUp(i);
            Program.Pace(round);
        }
        return sum;
    }
}

/// Tiny methods that the JIT compiles without a frame pointer.
public static class Tiny
{
    public sealed class Box(int value)
    {
        public readonly int Value = value;
        public readonly long Padding1, Padding2, Padding3;
    }

    [MethodImpl(MethodImplOptions.NoInlining)]
    static Box Make(int i) => new Box(i);

    [MethodImpl(MethodImplOptions.NoInlining)]
    static object Wrap(int i) => Make(i);

    public static long Run(Func<bool> running)
    {
        long sum = 0;
        for (int round = 0; running(); round++)
        {
            for (int i = 0; i < 400; i++) sum += ((Box)Wrap(i)).Value;
            Program.Pace(round);
        }
        return sum;
    }
}

/// Managed frames with the runtime's own frames between them: a static constructor the runtime
/// runs, reflection, and a finalizer on the runtime's finalizer thread.
public static class ThroughRuntime
{
    sealed class Finalized
    {
        ~Finalized() => Program.Sink = new char[40];
    }

    public sealed class Reflected
    {
        public string Describe(int i) => "reflected " + i + new string('r', 32);
    }

    public static long Run(Func<bool> running)
    {
        long sum = 0;
        var describe = typeof(Reflected).GetMethod(nameof(Reflected.Describe))!;
        var target = new Reflected();
        for (int round = 0; running(); round++)
        {
            for (int i = 0; i < 40; i++) sum += ((string)describe.Invoke(target, new object[] { i })!).Length;
            for (int i = 0; i < 40; i++) _ = new Finalized();
            sum += Initialised.Touch(round);
            Program.Pace(round);
        }
        return sum;
    }
}

/// Its static constructor runs once per new generic instantiation: called by the runtime.
public static class Initialised
{
    static class PerType<T>
    {
        public static readonly object[] Table = Build();

        static object[] Build()
        {
            var table = new object[256];
            for (int i = 0; i < table.Length; i++) table[i] = new string('s', 16);
            return table;
        }
    }

    public static int Touch(int round) => (round % 3) switch
    {
        0 => PerType<int>.Table.Length,
        1 => PerType<string>.Table.Length,
        _ => PerType<Order>.Table.Length,
    };
}

/// Managed code called back from native code (libc's qsort): a reverse P/Invoke.
public static unsafe class Callbacks
{
    [DllImport("libc", EntryPoint = "qsort")]
    static extern void QSort(int* items, nuint count, nuint size, delegate* unmanaged<int*, int*, int> compare);

    [UnmanagedCallersOnly]
    static int Compare(int* a, int* b)
    {
        Program.Sink = new long[4];
        return a->CompareTo(*b);
    }

    public static long Run(Func<bool> running)
    {
        long sum = 0;
        var items = new int[64];
        var random = new Random(1);
        for (int round = 0; running(); round++)
        {
            for (int i = 0; i < items.Length; i++) items[i] = random.Next();
            fixed (int* p = items) QSort(p, (nuint)items.Length, sizeof(int), &Compare);
            sum += items[0] & 1;
            Program.Pace(round);
        }
        return sum;
    }
}

/// Code in collectible assemblies that are unloaded while the agent runs.
public static class Collectible
{
    static Func<int, object> Emit(int generation)
    {
        var assembly = AssemblyBuilder.DefineDynamicAssembly(new AssemblyName("Plugin" + generation), AssemblyBuilderAccess.RunAndCollect);
        var module = assembly.DefineDynamicModule("Plugin" + generation);
        var type = module.DefineType("Plugin.Allocator", TypeAttributes.Public | TypeAttributes.Abstract | TypeAttributes.Sealed);
        var method = type.DefineMethod("Allocate", MethodAttributes.Public | MethodAttributes.Static, typeof(object), new[] { typeof(int) });
        var il = method.GetILGenerator();
        il.Emit(OpCodes.Ldarg_0);
        il.Emit(OpCodes.Ldc_I4, 64);
        il.Emit(OpCodes.Add);
        il.Emit(OpCodes.Newarr, typeof(byte));
        il.Emit(OpCodes.Ret);
        var allocate = type.CreateType()!.GetMethod("Allocate")!;
        return allocate.CreateDelegate<Func<int, object>>();
    }

    public static long Run(Func<bool> running)
    {
        long sum = 0;
        for (int generation = 0; running(); generation++)
        {
            var allocate = Emit(generation);
            for (int i = 0; i < 20000; i++) sum += ((byte[])allocate(960 + i % 64)).Length;
            allocate = null!;
            GC.Collect();
            GC.WaitForPendingFinalizers();
            Thread.Sleep(20);
        }
        return sum;
    }
}

/// Async methods: allocations in state machines resumed on thread-pool threads.
public static class Async
{
    [MethodImpl(MethodImplOptions.NoInlining)]
    static async Task<string> FetchAsync(int i)
    {
        await Task.Yield();
        return new string('a', 32 + i % 32) + i;
    }

    static async Task<int> HandleAsync(int i)
    {
        var text = await FetchAsync(i);
        var parts = new List<string> { text, text.ToUpperInvariant() };
        return parts.Count + text.Length;
    }

    public static async Task<long> Run(Func<bool> running)
    {
        long sum = 0;
        for (int round = 0; running(); round++)
        {
            var batch = Enumerable.Range(0, 20).Select(HandleAsync).ToArray();
            foreach (var n in await Task.WhenAll(batch)) sum += n;
            if (round % 16 == 0) await Task.Delay(1);
        }
        return sum;
    }
}
