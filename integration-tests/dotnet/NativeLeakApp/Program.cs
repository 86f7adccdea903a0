// NativeLeakApp: leaks (or, with --free, frees) unmanaged buffers from a
// known method, so the shim must name NativeLeakApp.Leaker.LeakBuffers as
// the native leak site (via the runtime's perf map).
//
//   dotnet NativeLeakApp.dll [--free] [--rounds N] [--count N] [--size BYTES] [--pause-ms MS]
//
// Prints "leaked_bytes=<n>" (requested bytes still allocated at the end) and exits 0.
using System;
using System.Collections.Generic;
using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;
using System.Threading;

namespace NativeLeakApp
{
    public static class Leaker
    {
        private static readonly List<IntPtr> Kept = new List<IntPtr>();

        public static long KeptBytes;

        /// <summary>The leak site the shim must name.</summary>
        [MethodImpl(MethodImplOptions.NoInlining)]
        public static void LeakBuffers(int count, int size)
        {
            for (int i = 0; i < count; i++)
            {
                IntPtr p = Marshal.AllocHGlobal(size);
                Marshal.WriteByte(p, 0, 1);
                Kept.Add(p);
                KeptBytes += size;
            }
        }

        [MethodImpl(MethodImplOptions.NoInlining)]
        public static void FreeAll()
        {
            foreach (IntPtr p in Kept)
            {
                Marshal.FreeHGlobal(p);
            }
            Kept.Clear();
            KeptBytes = 0;
        }
    }

    public static class Churn
    {
        /// <summary>Allocates and frees at once: never a survivor.</summary>
        [MethodImpl(MethodImplOptions.NoInlining)]
        public static void Run(int count)
        {
            for (int i = 0; i < count; i++)
            {
                IntPtr p = Marshal.AllocHGlobal(1024 + (i % 8192));
                Marshal.FreeHGlobal(p);
            }
        }
    }

    public static class Program
    {
        public static int Main(string[] args)
        {
            bool free = false;
            int rounds = 10, count = 100, size = 64 * 1024, pauseMs = 100;
            for (int i = 0; i < args.Length; i++)
            {
                switch (args[i])
                {
                    case "--free": free = true; break;
                    case "--rounds": rounds = int.Parse(args[++i]); break;
                    case "--count": count = int.Parse(args[++i]); break;
                    case "--size": size = int.Parse(args[++i]); break;
                    case "--pause-ms": pauseMs = int.Parse(args[++i]); break;
                    default: Console.Error.WriteLine("unknown argument " + args[i]); return 2;
                }
            }
            for (int r = 0; r < rounds; r++)
            {
                Leaker.LeakBuffers(count, size);
                Churn.Run(2000);
                if (free)
                {
                    Leaker.FreeAll();
                }
                Thread.Sleep(pauseMs);
            }
            Console.WriteLine("leaked_bytes=" + Leaker.KeptBytes);
            return 0;
        }
    }
}
