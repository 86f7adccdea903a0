//! The `ICorProfilerCallback11` vtable that leakscope hands to the runtime.
//!
//! Every slot of Callback1 through Callback11 is present, in `corprof.idl` order, typed with
//! its exact signature. Methods leakscope does not use return `S_OK` without looking at their
//! arguments; the runtime only calls those whose events we enabled.

#![allow(clippy::type_complexity)]

use std::ffi::c_void;

use super::object::ProfilerCallback;
use super::{callbacks, gc_roots};
use crate::clr::types::{BOOL, GUID, HRESULT, S_OK, WCHAR};

#[repr(C)]
pub struct CallbackVtable {
    // IUnknown
    /// slot 0
    pub query_interface: unsafe extern "system" fn(*mut ProfilerCallback, *const GUID, *mut *mut c_void) -> HRESULT,
    /// slot 1
    pub add_ref: unsafe extern "system" fn(*mut ProfilerCallback) -> u32,
    /// slot 2
    pub release: unsafe extern "system" fn(*mut ProfilerCallback) -> u32,
    // ICorProfilerCallback
    /// slot 3: `Initialize`
    pub initialize: unsafe extern "system" fn(*mut ProfilerCallback, *mut c_void) -> HRESULT,
    /// slot 4: `Shutdown`
    pub shutdown: unsafe extern "system" fn(*mut ProfilerCallback) -> HRESULT,
    /// slot 5: `AppDomainCreationStarted`
    pub app_domain_creation_started: unsafe extern "system" fn(*mut ProfilerCallback, usize) -> HRESULT,
    /// slot 6: `AppDomainCreationFinished`
    pub app_domain_creation_finished: unsafe extern "system" fn(*mut ProfilerCallback, usize, HRESULT) -> HRESULT,
    /// slot 7: `AppDomainShutdownStarted`
    pub app_domain_shutdown_started: unsafe extern "system" fn(*mut ProfilerCallback, usize) -> HRESULT,
    /// slot 8: `AppDomainShutdownFinished`
    pub app_domain_shutdown_finished: unsafe extern "system" fn(*mut ProfilerCallback, usize, HRESULT) -> HRESULT,
    /// slot 9: `AssemblyLoadStarted`
    pub assembly_load_started: unsafe extern "system" fn(*mut ProfilerCallback, usize) -> HRESULT,
    /// slot 10: `AssemblyLoadFinished`
    pub assembly_load_finished: unsafe extern "system" fn(*mut ProfilerCallback, usize, HRESULT) -> HRESULT,
    /// slot 11: `AssemblyUnloadStarted`
    pub assembly_unload_started: unsafe extern "system" fn(*mut ProfilerCallback, usize) -> HRESULT,
    /// slot 12: `AssemblyUnloadFinished`
    pub assembly_unload_finished: unsafe extern "system" fn(*mut ProfilerCallback, usize, HRESULT) -> HRESULT,
    /// slot 13: `ModuleLoadStarted`
    pub module_load_started: unsafe extern "system" fn(*mut ProfilerCallback, usize) -> HRESULT,
    /// slot 14: `ModuleLoadFinished`
    pub module_load_finished: unsafe extern "system" fn(*mut ProfilerCallback, usize, HRESULT) -> HRESULT,
    /// slot 15: `ModuleUnloadStarted`
    pub module_unload_started: unsafe extern "system" fn(*mut ProfilerCallback, usize) -> HRESULT,
    /// slot 16: `ModuleUnloadFinished`
    pub module_unload_finished: unsafe extern "system" fn(*mut ProfilerCallback, usize, HRESULT) -> HRESULT,
    /// slot 17: `ModuleAttachedToAssembly`
    pub module_attached_to_assembly: unsafe extern "system" fn(*mut ProfilerCallback, usize, usize) -> HRESULT,
    /// slot 18: `ClassLoadStarted`
    pub class_load_started: unsafe extern "system" fn(*mut ProfilerCallback, usize) -> HRESULT,
    /// slot 19: `ClassLoadFinished`
    pub class_load_finished: unsafe extern "system" fn(*mut ProfilerCallback, usize, HRESULT) -> HRESULT,
    /// slot 20: `ClassUnloadStarted`
    pub class_unload_started: unsafe extern "system" fn(*mut ProfilerCallback, usize) -> HRESULT,
    /// slot 21: `ClassUnloadFinished`
    pub class_unload_finished: unsafe extern "system" fn(*mut ProfilerCallback, usize, HRESULT) -> HRESULT,
    /// slot 22: `FunctionUnloadStarted`
    pub function_unload_started: unsafe extern "system" fn(*mut ProfilerCallback, usize) -> HRESULT,
    /// slot 23: `JITCompilationStarted`
    pub jit_compilation_started: unsafe extern "system" fn(*mut ProfilerCallback, usize, BOOL) -> HRESULT,
    /// slot 24: `JITCompilationFinished`
    pub jit_compilation_finished: unsafe extern "system" fn(*mut ProfilerCallback, usize, HRESULT, BOOL) -> HRESULT,
    /// slot 25: `JITCachedFunctionSearchStarted`
    pub jit_cached_function_search_started:
        unsafe extern "system" fn(*mut ProfilerCallback, usize, *mut BOOL) -> HRESULT,
    /// slot 26: `JITCachedFunctionSearchFinished`
    pub jit_cached_function_search_finished: unsafe extern "system" fn(*mut ProfilerCallback, usize, u32) -> HRESULT,
    /// slot 27: `JITFunctionPitched`
    pub jit_function_pitched: unsafe extern "system" fn(*mut ProfilerCallback, usize) -> HRESULT,
    /// slot 28: `JITInlining`
    pub jit_inlining: unsafe extern "system" fn(*mut ProfilerCallback, usize, usize, *mut BOOL) -> HRESULT,
    /// slot 29: `ThreadCreated`
    pub thread_created: unsafe extern "system" fn(*mut ProfilerCallback, usize) -> HRESULT,
    /// slot 30: `ThreadDestroyed`
    pub thread_destroyed: unsafe extern "system" fn(*mut ProfilerCallback, usize) -> HRESULT,
    /// slot 31: `ThreadAssignedToOSThread`
    pub thread_assigned_to_os_thread: unsafe extern "system" fn(*mut ProfilerCallback, usize, u32) -> HRESULT,
    /// slot 32: `RemotingClientInvocationStarted`
    pub remoting_client_invocation_started: unsafe extern "system" fn(*mut ProfilerCallback) -> HRESULT,
    /// slot 33: `RemotingClientSendingMessage`
    pub remoting_client_sending_message: unsafe extern "system" fn(*mut ProfilerCallback, *const GUID, BOOL) -> HRESULT,
    /// slot 34: `RemotingClientReceivingReply`
    pub remoting_client_receiving_reply: unsafe extern "system" fn(*mut ProfilerCallback, *const GUID, BOOL) -> HRESULT,
    /// slot 35: `RemotingClientInvocationFinished`
    pub remoting_client_invocation_finished: unsafe extern "system" fn(*mut ProfilerCallback) -> HRESULT,
    /// slot 36: `RemotingServerReceivingMessage`
    pub remoting_server_receiving_message:
        unsafe extern "system" fn(*mut ProfilerCallback, *const GUID, BOOL) -> HRESULT,
    /// slot 37: `RemotingServerInvocationStarted`
    pub remoting_server_invocation_started: unsafe extern "system" fn(*mut ProfilerCallback) -> HRESULT,
    /// slot 38: `RemotingServerInvocationReturned`
    pub remoting_server_invocation_returned: unsafe extern "system" fn(*mut ProfilerCallback) -> HRESULT,
    /// slot 39: `RemotingServerSendingReply`
    pub remoting_server_sending_reply: unsafe extern "system" fn(*mut ProfilerCallback, *const GUID, BOOL) -> HRESULT,
    /// slot 40: `UnmanagedToManagedTransition`
    pub unmanaged_to_managed_transition: unsafe extern "system" fn(*mut ProfilerCallback, usize, u32) -> HRESULT,
    /// slot 41: `ManagedToUnmanagedTransition`
    pub managed_to_unmanaged_transition: unsafe extern "system" fn(*mut ProfilerCallback, usize, u32) -> HRESULT,
    /// slot 42: `RuntimeSuspendStarted`
    pub runtime_suspend_started: unsafe extern "system" fn(*mut ProfilerCallback, u32) -> HRESULT,
    /// slot 43: `RuntimeSuspendFinished`
    pub runtime_suspend_finished: unsafe extern "system" fn(*mut ProfilerCallback) -> HRESULT,
    /// slot 44: `RuntimeSuspendAborted`
    pub runtime_suspend_aborted: unsafe extern "system" fn(*mut ProfilerCallback) -> HRESULT,
    /// slot 45: `RuntimeResumeStarted`
    pub runtime_resume_started: unsafe extern "system" fn(*mut ProfilerCallback) -> HRESULT,
    /// slot 46: `RuntimeResumeFinished`
    pub runtime_resume_finished: unsafe extern "system" fn(*mut ProfilerCallback) -> HRESULT,
    /// slot 47: `RuntimeThreadSuspended`
    pub runtime_thread_suspended: unsafe extern "system" fn(*mut ProfilerCallback, usize) -> HRESULT,
    /// slot 48: `RuntimeThreadResumed`
    pub runtime_thread_resumed: unsafe extern "system" fn(*mut ProfilerCallback, usize) -> HRESULT,
    /// slot 49: `MovedReferences`
    pub moved_references:
        unsafe extern "system" fn(*mut ProfilerCallback, u32, *const usize, *const usize, *const u32) -> HRESULT,
    /// slot 50: `ObjectAllocated`
    pub object_allocated: unsafe extern "system" fn(*mut ProfilerCallback, usize, usize) -> HRESULT,
    /// slot 51: `ObjectsAllocatedByClass`
    pub objects_allocated_by_class:
        unsafe extern "system" fn(*mut ProfilerCallback, u32, *const usize, *const u32) -> HRESULT,
    /// slot 52: `ObjectReferences`
    pub object_references: unsafe extern "system" fn(*mut ProfilerCallback, usize, usize, u32, *const usize) -> HRESULT,
    /// slot 53: `RootReferences`
    pub root_references: unsafe extern "system" fn(*mut ProfilerCallback, u32, *const usize) -> HRESULT,
    /// slot 54: `ExceptionThrown`
    pub exception_thrown: unsafe extern "system" fn(*mut ProfilerCallback, usize) -> HRESULT,
    /// slot 55: `ExceptionSearchFunctionEnter`
    pub exception_search_function_enter: unsafe extern "system" fn(*mut ProfilerCallback, usize) -> HRESULT,
    /// slot 56: `ExceptionSearchFunctionLeave`
    pub exception_search_function_leave: unsafe extern "system" fn(*mut ProfilerCallback) -> HRESULT,
    /// slot 57: `ExceptionSearchFilterEnter`
    pub exception_search_filter_enter: unsafe extern "system" fn(*mut ProfilerCallback, usize) -> HRESULT,
    /// slot 58: `ExceptionSearchFilterLeave`
    pub exception_search_filter_leave: unsafe extern "system" fn(*mut ProfilerCallback) -> HRESULT,
    /// slot 59: `ExceptionSearchCatcherFound`
    pub exception_search_catcher_found: unsafe extern "system" fn(*mut ProfilerCallback, usize) -> HRESULT,
    /// slot 60: `ExceptionOSHandlerEnter`
    pub exception_os_handler_enter: unsafe extern "system" fn(*mut ProfilerCallback, usize) -> HRESULT,
    /// slot 61: `ExceptionOSHandlerLeave`
    pub exception_os_handler_leave: unsafe extern "system" fn(*mut ProfilerCallback, usize) -> HRESULT,
    /// slot 62: `ExceptionUnwindFunctionEnter`
    pub exception_unwind_function_enter: unsafe extern "system" fn(*mut ProfilerCallback, usize) -> HRESULT,
    /// slot 63: `ExceptionUnwindFunctionLeave`
    pub exception_unwind_function_leave: unsafe extern "system" fn(*mut ProfilerCallback) -> HRESULT,
    /// slot 64: `ExceptionUnwindFinallyEnter`
    pub exception_unwind_finally_enter: unsafe extern "system" fn(*mut ProfilerCallback, usize) -> HRESULT,
    /// slot 65: `ExceptionUnwindFinallyLeave`
    pub exception_unwind_finally_leave: unsafe extern "system" fn(*mut ProfilerCallback) -> HRESULT,
    /// slot 66: `ExceptionCatcherEnter`
    pub exception_catcher_enter: unsafe extern "system" fn(*mut ProfilerCallback, usize, usize) -> HRESULT,
    /// slot 67: `ExceptionCatcherLeave`
    pub exception_catcher_leave: unsafe extern "system" fn(*mut ProfilerCallback) -> HRESULT,
    /// slot 68: `COMClassicVTableCreated`
    pub com_classic_v_table_created:
        unsafe extern "system" fn(*mut ProfilerCallback, usize, *const GUID, *mut c_void, u32) -> HRESULT,
    /// slot 69: `COMClassicVTableDestroyed`
    pub com_classic_v_table_destroyed:
        unsafe extern "system" fn(*mut ProfilerCallback, usize, *const GUID, *mut c_void) -> HRESULT,
    /// slot 70: `ExceptionCLRCatcherFound`
    pub exception_clr_catcher_found: unsafe extern "system" fn(*mut ProfilerCallback) -> HRESULT,
    /// slot 71: `ExceptionCLRCatcherExecute`
    pub exception_clr_catcher_execute: unsafe extern "system" fn(*mut ProfilerCallback) -> HRESULT,
    // ICorProfilerCallback2
    /// slot 72: `ThreadNameChanged`
    pub thread_name_changed: unsafe extern "system" fn(*mut ProfilerCallback, usize, u32, *const WCHAR) -> HRESULT,
    /// slot 73: `GarbageCollectionStarted`
    pub garbage_collection_started: unsafe extern "system" fn(*mut ProfilerCallback, i32, *const BOOL, u32) -> HRESULT,
    /// slot 74: `SurvivingReferences`
    pub surviving_references:
        unsafe extern "system" fn(*mut ProfilerCallback, u32, *const usize, *const u32) -> HRESULT,
    /// slot 75: `GarbageCollectionFinished`
    pub garbage_collection_finished: unsafe extern "system" fn(*mut ProfilerCallback) -> HRESULT,
    /// slot 76: `FinalizeableObjectQueued`
    pub finalizeable_object_queued: unsafe extern "system" fn(*mut ProfilerCallback, u32, usize) -> HRESULT,
    /// slot 77: `RootReferences2`
    pub root_references2: unsafe extern "system" fn(
        *mut ProfilerCallback,
        u32,
        *const usize,
        *const u32,
        *const u32,
        *const usize,
    ) -> HRESULT,
    /// slot 78: `HandleCreated`
    pub handle_created: unsafe extern "system" fn(*mut ProfilerCallback, usize, usize) -> HRESULT,
    /// slot 79: `HandleDestroyed`
    pub handle_destroyed: unsafe extern "system" fn(*mut ProfilerCallback, usize) -> HRESULT,
    // ICorProfilerCallback3
    /// slot 80: `InitializeForAttach`
    pub initialize_for_attach:
        unsafe extern "system" fn(*mut ProfilerCallback, *mut c_void, *mut c_void, u32) -> HRESULT,
    /// slot 81: `ProfilerAttachComplete`
    pub profiler_attach_complete: unsafe extern "system" fn(*mut ProfilerCallback) -> HRESULT,
    /// slot 82: `ProfilerDetachSucceeded`
    pub profiler_detach_succeeded: unsafe extern "system" fn(*mut ProfilerCallback) -> HRESULT,
    // ICorProfilerCallback4
    /// slot 83: `ReJITCompilationStarted`
    pub re_jit_compilation_started: unsafe extern "system" fn(*mut ProfilerCallback, usize, usize, BOOL) -> HRESULT,
    /// slot 84: `GetReJITParameters`
    pub get_re_jit_parameters: unsafe extern "system" fn(*mut ProfilerCallback, usize, u32, *mut c_void) -> HRESULT,
    /// slot 85: `ReJITCompilationFinished`
    pub re_jit_compilation_finished:
        unsafe extern "system" fn(*mut ProfilerCallback, usize, usize, HRESULT, BOOL) -> HRESULT,
    /// slot 86: `ReJITError`
    pub re_jit_error: unsafe extern "system" fn(*mut ProfilerCallback, usize, u32, usize, HRESULT) -> HRESULT,
    /// slot 87: `MovedReferences2`
    pub moved_references2:
        unsafe extern "system" fn(*mut ProfilerCallback, u32, *const usize, *const usize, *const usize) -> HRESULT,
    /// slot 88: `SurvivingReferences2`
    pub surviving_references2:
        unsafe extern "system" fn(*mut ProfilerCallback, u32, *const usize, *const usize) -> HRESULT,
    // ICorProfilerCallback5
    /// slot 89: `ConditionalWeakTableElementReferences`
    pub conditional_weak_table_element_references:
        unsafe extern "system" fn(*mut ProfilerCallback, u32, *const usize, *const usize, *const usize) -> HRESULT,
    // ICorProfilerCallback6
    /// slot 90: `GetAssemblyReferences`
    pub get_assembly_references: unsafe extern "system" fn(*mut ProfilerCallback, *const WCHAR, *mut c_void) -> HRESULT,
    // ICorProfilerCallback7
    /// slot 91: `ModuleInMemorySymbolsUpdated`
    pub module_in_memory_symbols_updated: unsafe extern "system" fn(*mut ProfilerCallback, usize) -> HRESULT,
    // ICorProfilerCallback8
    /// slot 92: `DynamicMethodJITCompilationStarted`
    pub dynamic_method_jit_compilation_started:
        unsafe extern "system" fn(*mut ProfilerCallback, usize, BOOL, *const u8, u32) -> HRESULT,
    /// slot 93: `DynamicMethodJITCompilationFinished`
    pub dynamic_method_jit_compilation_finished:
        unsafe extern "system" fn(*mut ProfilerCallback, usize, HRESULT, BOOL) -> HRESULT,
    // ICorProfilerCallback9
    /// slot 94: `DynamicMethodUnloaded`
    pub dynamic_method_unloaded: unsafe extern "system" fn(*mut ProfilerCallback, usize) -> HRESULT,
    // ICorProfilerCallback10
    /// slot 95: `EventPipeEventDelivered`
    pub event_pipe_event_delivered: unsafe extern "system" fn(
        *mut ProfilerCallback,
        usize,
        u32,
        u32,
        u32,
        *const u8,
        u32,
        *const u8,
        *const GUID,
        *const GUID,
        usize,
        u32,
        *const usize,
    ) -> HRESULT,
    /// slot 96: `EventPipeProviderCreated`
    pub event_pipe_provider_created: unsafe extern "system" fn(*mut ProfilerCallback, usize) -> HRESULT,
    // ICorProfilerCallback11
    /// slot 97: `LoadAsNotificationOnly`
    pub load_as_notification_only: unsafe extern "system" fn(*mut ProfilerCallback, *mut BOOL) -> HRESULT,
}

/// Number of slots, IUnknown's included: `LoadAsNotificationOnly` is slot 97.
pub const SLOT_COUNT: usize = 98;
const _: () = assert!(std::mem::size_of::<CallbackVtable>() == SLOT_COUNT * std::mem::size_of::<usize>());

pub static VTABLE: CallbackVtable = CallbackVtable {
    query_interface: super::object::query_interface,
    add_ref: super::object::add_ref,
    release: super::object::release,
    initialize: callbacks::initialize,
    shutdown: callbacks::shutdown,
    app_domain_creation_started: ignore1::<usize>,
    app_domain_creation_finished: ignore2::<usize, HRESULT>,
    app_domain_shutdown_started: ignore1::<usize>,
    app_domain_shutdown_finished: ignore2::<usize, HRESULT>,
    assembly_load_started: ignore1::<usize>,
    assembly_load_finished: ignore2::<usize, HRESULT>,
    assembly_unload_started: ignore1::<usize>,
    assembly_unload_finished: ignore2::<usize, HRESULT>,
    module_load_started: ignore1::<usize>,
    module_load_finished: ignore2::<usize, HRESULT>,
    module_unload_started: callbacks::module_unload_started,
    module_unload_finished: ignore2::<usize, HRESULT>,
    module_attached_to_assembly: ignore2::<usize, usize>,
    class_load_started: ignore1::<usize>,
    class_load_finished: callbacks::class_load_finished,
    class_unload_started: callbacks::class_unload_started,
    class_unload_finished: ignore2::<usize, HRESULT>,
    function_unload_started: ignore1::<usize>,
    jit_compilation_started: ignore2::<usize, BOOL>,
    jit_compilation_finished: ignore3::<usize, HRESULT, BOOL>,
    jit_cached_function_search_started: ignore2::<usize, *mut BOOL>,
    jit_cached_function_search_finished: ignore2::<usize, u32>,
    jit_function_pitched: ignore1::<usize>,
    jit_inlining: ignore3::<usize, usize, *mut BOOL>,
    thread_created: ignore1::<usize>,
    thread_destroyed: ignore1::<usize>,
    thread_assigned_to_os_thread: ignore2::<usize, u32>,
    remoting_client_invocation_started: ignore0,
    remoting_client_sending_message: ignore2::<*const GUID, BOOL>,
    remoting_client_receiving_reply: ignore2::<*const GUID, BOOL>,
    remoting_client_invocation_finished: ignore0,
    remoting_server_receiving_message: ignore2::<*const GUID, BOOL>,
    remoting_server_invocation_started: ignore0,
    remoting_server_invocation_returned: ignore0,
    remoting_server_sending_reply: ignore2::<*const GUID, BOOL>,
    unmanaged_to_managed_transition: ignore2::<usize, u32>,
    managed_to_unmanaged_transition: ignore2::<usize, u32>,
    runtime_suspend_started: ignore1::<u32>,
    runtime_suspend_finished: ignore0,
    runtime_suspend_aborted: ignore0,
    runtime_resume_started: ignore0,
    runtime_resume_finished: ignore0,
    runtime_thread_suspended: ignore1::<usize>,
    runtime_thread_resumed: ignore1::<usize>,
    moved_references: ignore4::<u32, *const usize, *const usize, *const u32>,
    object_allocated: super::trampoline::object_allocated,
    objects_allocated_by_class: ignore3::<u32, *const usize, *const u32>,
    object_references: gc_roots::object_references,
    root_references: ignore2::<u32, *const usize>,
    exception_thrown: ignore1::<usize>,
    exception_search_function_enter: ignore1::<usize>,
    exception_search_function_leave: ignore0,
    exception_search_filter_enter: ignore1::<usize>,
    exception_search_filter_leave: ignore0,
    exception_search_catcher_found: ignore1::<usize>,
    exception_os_handler_enter: ignore1::<usize>,
    exception_os_handler_leave: ignore1::<usize>,
    exception_unwind_function_enter: ignore1::<usize>,
    exception_unwind_function_leave: ignore0,
    exception_unwind_finally_enter: ignore1::<usize>,
    exception_unwind_finally_leave: ignore0,
    exception_catcher_enter: ignore2::<usize, usize>,
    exception_catcher_leave: ignore0,
    com_classic_v_table_created: ignore4::<usize, *const GUID, *mut c_void, u32>,
    com_classic_v_table_destroyed: ignore3::<usize, *const GUID, *mut c_void>,
    exception_clr_catcher_found: ignore0,
    exception_clr_catcher_execute: ignore0,
    thread_name_changed: ignore3::<usize, u32, *const WCHAR>,
    garbage_collection_started: ignore3::<i32, *const BOOL, u32>,
    surviving_references: ignore3::<u32, *const usize, *const u32>,
    garbage_collection_finished: callbacks::garbage_collection_finished,
    finalizeable_object_queued: ignore2::<u32, usize>,
    root_references2: gc_roots::root_references2,
    handle_created: ignore2::<usize, usize>,
    handle_destroyed: ignore1::<usize>,
    initialize_for_attach: callbacks::initialize_for_attach,
    profiler_attach_complete: ignore0,
    profiler_detach_succeeded: callbacks::profiler_detach_succeeded,
    re_jit_compilation_started: ignore3::<usize, usize, BOOL>,
    get_re_jit_parameters: ignore3::<usize, u32, *mut c_void>,
    re_jit_compilation_finished: ignore4::<usize, usize, HRESULT, BOOL>,
    re_jit_error: ignore4::<usize, u32, usize, HRESULT>,
    moved_references2: ignore4::<u32, *const usize, *const usize, *const usize>,
    surviving_references2: ignore3::<u32, *const usize, *const usize>,
    conditional_weak_table_element_references: ignore4::<u32, *const usize, *const usize, *const usize>,
    get_assembly_references: ignore2::<*const WCHAR, *mut c_void>,
    module_in_memory_symbols_updated: ignore1::<usize>,
    dynamic_method_jit_compilation_started: ignore4::<usize, BOOL, *const u8, u32>,
    dynamic_method_jit_compilation_finished: ignore3::<usize, HRESULT, BOOL>,
    dynamic_method_unloaded: ignore1::<usize>,
    event_pipe_event_delivered: super::trampoline::event_pipe_event_delivered,
    event_pipe_provider_created: ignore1::<usize>,
    load_as_notification_only: callbacks::load_as_notification_only,
};

// The callbacks leakscope does not use: they only return S_OK, so there is nothing that could
// panic and nothing to guard.
unsafe extern "system" fn ignore0(_: *mut ProfilerCallback) -> HRESULT {
    S_OK
}
unsafe extern "system" fn ignore1<A>(_: *mut ProfilerCallback, _: A) -> HRESULT {
    S_OK
}
unsafe extern "system" fn ignore2<A, B>(_: *mut ProfilerCallback, _: A, _: B) -> HRESULT {
    S_OK
}
unsafe extern "system" fn ignore3<A, B, C>(_: *mut ProfilerCallback, _: A, _: B, _: C) -> HRESULT {
    S_OK
}
unsafe extern "system" fn ignore4<A, B, C, D>(_: *mut ProfilerCallback, _: A, _: B, _: C, _: D) -> HRESULT {
    S_OK
}
