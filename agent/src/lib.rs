//! leakscope CLR profiler agent.
