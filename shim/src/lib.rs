//! leakscope LD_PRELOAD shim.
