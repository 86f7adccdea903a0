//! Safe wrapper over the runtime's `ICorProfilerInfo*` interface.
//!
//! Each interface version extends the previous one, so a single pointer to the highest version
//! the runtime implements serves every method; `version` says which slots exist. Slot numbers
//! include IUnknown's three and follow `corprof.idl`.

use std::ffi::c_void;

use super::com_call::{method, release};
use super::gate;
use super::own_thread;
use super::types::*;
use super::{guids, metadata::MetaDataImport};

/// The methods that look into code, modules, objects and statics.
mod inspection;

mod slot {
    pub const GET_CLASS_FROM_OBJECT: usize = 3;
    pub const GET_FUNCTION_FROM_IP: usize = 7;
    pub const GET_FUNCTION_FROM_TOKEN: usize = 8;
    pub const GET_FUNCTION_INFO: usize = 15;
    pub const GET_ASSEMBLY_INFO: usize = 26;
    pub const GET_CLASS_LAYOUT: usize = 40;
    pub const GET_APP_DOMAIN_STATIC_ADDRESS: usize = 50;
    pub const ENUM_MODULES: usize = 66;
    pub const ENUMERATE_OBJECT_REFERENCES: usize = 93;
    pub const SUSPEND_RUNTIME: usize = 97;
    pub const RESUME_RUNTIME: usize = 98;
    pub const GET_CLASS_ID_INFO: usize = 14;
    pub const GET_TOKEN_AND_METADATA_FROM_FUNCTION: usize = 19;
    pub const GET_MODULE_INFO: usize = 20;
    pub const GET_MODULE_META_DATA: usize = 21;
    pub const FORCE_GC: usize = 28;
    pub const IS_ARRAY_CLASS: usize = 11;
    pub const GET_THREAD_INFO: usize = 12;
    pub const GET_CURRENT_THREAD_ID: usize = 13;
    pub const DO_STACK_SNAPSHOT: usize = 36;
    pub const GET_FUNCTION_INFO2: usize = 38;
    pub const GET_CLASS_ID_INFO2: usize = 41;
    pub const GET_STATIC_FIELD_INFO: usize = 53;
    pub const GET_GENERATION_BOUNDS: usize = 54;
    pub const GET_THREAD_STATIC_ADDRESS2: usize = 68;
    pub const ENUM_THREADS: usize = 71;
    pub const REQUEST_PROFILER_DETACH: usize = 58;
    pub const GET_RUNTIME_INFORMATION: usize = 67;
    pub const INITIALIZE_CURRENT_THREAD: usize = 72;
    pub const GET_OBJECT_SIZE2: usize = 80;
    pub const GET_NATIVE_CODE_START_ADDRESSES: usize = 90;
    pub const GET_IL_TO_NATIVE_MAPPING3: usize = 91;
    pub const GET_CODE_INFO4: usize = 92;
    pub const GET_EVENT_MASK2: usize = 81;
    pub const SET_EVENT_MASK2: usize = 82;
    pub const EVENT_PIPE_START_SESSION: usize = 101;
    pub const EVENT_PIPE_STOP_SESSION: usize = 103;
    pub const EVENT_PIPE_GET_PROVIDER_INFO: usize = 105;
    pub const CREATE_HANDLE: usize = 108;
    pub const DESTROY_HANDLE: usize = 109;
    pub const GET_OBJECT_ID_FROM_HANDLE: usize = 110;
    pub const GET_NON_GC_HEAP_BOUNDS: usize = 112;
    pub const ENUMERATE_GC_HEAP_OBJECTS: usize = 114;
}

/// Called by `DoStackSnapshot` once per managed frame (and once per run of native frames,
/// with `function == 0`). Returning anything but `S_OK` stops the walk.
pub type StackSnapshotCallback = unsafe extern "system" fn(
    function: FunctionID,
    ip: usize,
    frame_info: usize,
    context_size: u32,
    context: *mut u8,
    client_data: *mut c_void,
) -> HRESULT;

/// `COR_DEBUG_IL_TO_NATIVE_MAP`: native offsets `[native_start, native_end)` came from IL
/// offset `il_offset` (negative values as u32 mark prolog, epilog, or no mapping).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct IlToNativeMap {
    pub il_offset: u32,
    pub native_start: u32,
    pub native_end: u32,
}

/// `COR_PRF_CODE_INFO`: one contiguous chunk of a method's native code.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct CodeChunk {
    pub start: usize,
    pub size: usize,
}

/// Called by `EnumerateGCHeapObjects` once per object; returning FALSE (0) stops the walk.
pub type ObjectCallback = unsafe extern "system" fn(object: ObjectID, state: *mut c_void) -> BOOL;

/// Called by `EnumerateObjectReferences` once per reference an object holds: `slot` is the
/// address of the field (or array element) that holds it. Returning FALSE stops the walk.
pub type ObjectReferenceCallback =
    unsafe extern "system" fn(object: ObjectID, slot: *const ObjectID, state: *mut c_void) -> BOOL;

/// `COR_FIELD_OFFSET`: a field's token and its offset in the object.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct FieldOffset {
    pub field: mdToken,
    pub offset: u32,
}

/// The runtime version as reported by `GetRuntimeInformation`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct RuntimeVersion {
    pub major: u16,
    pub minor: u16,
    pub build: u16,
    pub qfe: u16,
}

impl std::fmt::Display for RuntimeVersion {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}.{}.{}", self.major, self.minor, self.build)
    }
}

/// What `GetClassIDInfo2` tells about a class.
#[derive(Clone, Debug, Default)]
pub struct ClassInfo {
    pub module: ModuleID,
    pub type_def: mdToken,
    pub type_args: Vec<ClassID>,
}

/// What `GetFunctionInfo2` tells about a function.
#[derive(Clone, Copy, Debug, Default)]
pub struct FunctionInfo {
    pub class: ClassID,
    pub module: ModuleID,
    pub token: mdToken,
}

/// An array class: its element class and rank.
#[derive(Clone, Copy, Debug)]
pub struct ArrayInfo {
    pub element_type: u32,
    pub element_class: ClassID,
    pub rank: u32,
}

/// The runtime's `ICorProfilerInfoN`. The runtime documents these methods as callable from
/// any thread (subject to per-method rules noted on each wrapper), so the wrapper is `Sync`.
pub struct ProfilerInfo {
    ptr: *mut c_void,
    version: u32,
}

// SAFETY: ICorProfilerInfo is free-threaded: the runtime serialises nothing on our behalf and
// expects concurrent calls from callbacks on many threads and from the profiler's own threads.
unsafe impl Send for ProfilerInfo {}
// SAFETY: as above; the wrapper holds no interior state besides the immutable pointer.
unsafe impl Sync for ProfilerInfo {}

impl ProfilerInfo {
    /// Asks `unknown` (the pointer passed to `Initialize`) for the highest `ICorProfilerInfo`
    /// version it implements, down to `minimum`.
    ///
    /// # Safety
    /// `unknown` must be the live IUnknown the runtime passed to `Initialize`.
    pub unsafe fn query(unknown: *mut c_void, minimum: u32) -> Option<ProfilerInfo> {
        for version in (minimum..=guids::IID_INFOS.len() as u32).rev() {
            let iid = &guids::IID_INFOS[version as usize - 1];
            // SAFETY: `unknown` is a live COM object per the contract.
            if let Some(ptr) = unsafe { super::com_call::query_interface(unknown, iid) } {
                return Some(ProfilerInfo { ptr, version });
            }
        }
        None
    }

    /// The `ICorProfilerInfoN` version obtained.
    pub fn version(&self) -> u32 {
        self.version
    }

    fn require(&self, version: u32) -> Result<(), HRESULT> {
        if self.version >= version { Ok(()) } else { Err(E_NOINTERFACE) }
    }

    pub fn set_event_mask2(&self, low: u32, high: u32) -> Result<(), HRESULT> {
        self.require(5)?;
        type F = unsafe extern "system" fn(*mut c_void, u32, u32) -> HRESULT;
        // SAFETY: Info5 slot 82 is SetEventMask2(DWORD, DWORD); version checked above.
        check(gate::RUNTIME.call(|| unsafe { method::<F>(self.ptr, slot::SET_EVENT_MASK2)(self.ptr, low, high) }))
    }

    /// The event mask in force (low, high words).
    pub fn event_mask2(&self) -> Result<(u32, u32), HRESULT> {
        self.require(5)?;
        type F = unsafe extern "system" fn(*mut c_void, *mut u32, *mut u32) -> HRESULT;
        let (mut low, mut high) = (0u32, 0u32);
        let hr = gate::RUNTIME.call(|| {
            // SAFETY: Info5 slot 81 is GetEventMask2(DWORD*, DWORD*).
            unsafe { method::<F>(self.ptr, slot::GET_EVENT_MASK2)(self.ptr, &mut low, &mut high) }
        });
        check(hr)?;
        Ok((low, high))
    }

    pub fn runtime_version(&self) -> Result<RuntimeVersion, HRESULT> {
        self.require(3)?;
        type F = unsafe extern "system" fn(
            *mut c_void,
            *mut u16,
            *mut u32,
            *mut u16,
            *mut u16,
            *mut u16,
            *mut u16,
            u32,
            *mut u32,
            *mut WCHAR,
        ) -> HRESULT;
        let mut v = RuntimeVersion::default();
        let mut runtime_type = 0u32;
        // SAFETY: Info3 slot 67 is GetRuntimeInformation; every out-pointer is valid or NULL,
        // and a zero-length version-string buffer is allowed.
        check(gate::RUNTIME.call(|| unsafe {
            method::<F>(self.ptr, slot::GET_RUNTIME_INFORMATION)(
                self.ptr,
                std::ptr::null_mut(),
                &mut runtime_type,
                &mut v.major,
                &mut v.minor,
                &mut v.build,
                &mut v.qfe,
                0,
                std::ptr::null_mut(),
                std::ptr::null_mut(),
            )
        }))?;
        Ok(v)
    }

    /// Asks the runtime to detach and unload the profiler. Only from the profiler's own thread,
    /// which must stop running profiler code within `expected_ms`.
    pub fn request_profiler_detach(&self, expected_ms: u32) -> Result<(), HRESULT> {
        self.require(3)?;
        type F = unsafe extern "system" fn(*mut c_void, u32) -> HRESULT;
        // SAFETY: Info3 slot 58 is RequestProfilerDetach(DWORD dwExpectedCompletionMilliseconds).
        check(
            gate::RUNTIME
                .call(|| unsafe { method::<F>(self.ptr, slot::REQUEST_PROFILER_DETACH)(self.ptr, expected_ms) }),
        )
    }

    /// The calling thread's runtime thread (`GetCurrentThreadID`, an asynchronous call: allowed
    /// anywhere). `CORPROF_E_NOT_MANAGED_THREAD` when the runtime has no thread object for it.
    pub fn current_thread_id(&self) -> Result<ThreadID, HRESULT> {
        type F = unsafe extern "system" fn(*mut c_void, *mut ThreadID) -> HRESULT;
        let mut thread: ThreadID = 0;
        let hr = gate::RUNTIME.call(|| {
            // SAFETY: Info slot 13 is GetCurrentThreadID(ThreadID*); `thread` is a valid out-pointer.
            unsafe { method::<F>(self.ptr, slot::GET_CURRENT_THREAD_ID)(self.ptr, &mut thread) }
        });
        check(hr)?;
        Ok(thread)
    }

    /// Must be called on a thread the profiler created before it uses other methods.
    pub fn initialize_current_thread(&self) -> Result<(), HRESULT> {
        self.require(4)?;
        type F = unsafe extern "system" fn(*mut c_void) -> HRESULT;
        // SAFETY: Info4 slot 72 is InitializeCurrentThread().
        check(gate::RUNTIME.call(|| unsafe { method::<F>(self.ptr, slot::INITIALIZE_CURRENT_THREAD)(self.ptr) }))
    }

    /// Starts an in-process EventPipe session delivering events to `EventPipeEventDelivered`.
    /// Off the agent thread (`own_thread`): starting one can make its caller a runtime thread.
    pub fn event_pipe_start_session(&self, providers: &[EventPipeProviderConfig]) -> Result<EventPipeSession, HRESULT> {
        self.require(12)?;
        type F = unsafe extern "system" fn(
            *mut c_void,
            u32,
            *const EventPipeProviderConfig,
            BOOL,
            *mut EventPipeSession,
        ) -> HRESULT;
        // An address, to cross to the spare thread, which is joined before this returns.
        let (configs, count) = (providers.as_ptr() as usize, providers.len() as u32);
        own_thread::away_from_agent_thread("start an EventPipe session", || {
            let mut session: EventPipeSession = 0;
            // SAFETY: Info12 slot 101 is EventPipeStartSession; `providers` outlives the call
            // (the caller's borrow lasts until the spare thread, if any, is joined) and every
            // name pointer in it points to NUL-terminated UTF-16 owned by the caller.
            check(gate::RUNTIME.call(|| unsafe {
                method::<F>(self.ptr, slot::EVENT_PIPE_START_SESSION)(
                    self.ptr,
                    count,
                    configs as *const EventPipeProviderConfig,
                    0,
                    &mut session,
                )
            }))?;
            Ok(session)
        })
        .unwrap_or(Err(E_FAIL))
    }

    /// Stops a session. Off the agent thread (`own_thread`): stopping one makes its caller a
    /// runtime thread.
    pub fn event_pipe_stop_session(&self, session: EventPipeSession) -> Result<(), HRESULT> {
        self.require(12)?;
        type F = unsafe extern "system" fn(*mut c_void, EventPipeSession) -> HRESULT;
        own_thread::away_from_agent_thread("stop an EventPipe session", || {
            // SAFETY: Info12 slot 103 is EventPipeStopSession(EVENTPIPE_SESSION).
            check(
                gate::RUNTIME
                    .call(|| unsafe { method::<F>(self.ptr, slot::EVENT_PIPE_STOP_SESSION)(self.ptr, session) }),
            )
        })
        .unwrap_or(Err(E_FAIL))
    }

    /// The name of an EventPipe provider.
    pub fn event_pipe_provider_name(&self, provider: EventPipeProvider) -> Result<String, HRESULT> {
        self.require(12)?;
        type F = unsafe extern "system" fn(*mut c_void, EventPipeProvider, u32, *mut u32, *mut WCHAR) -> HRESULT;
        let mut buf = [0u16; 128];
        let mut len = 0u32;
        // SAFETY: Info12 slot 105 is EventPipeGetProviderInfo(provider, ULONG cch, ULONG* pcch,
        // WCHAR[]); the buffer holds 128 units.
        check(gate::RUNTIME.call(|| unsafe {
            method::<F>(self.ptr, slot::EVENT_PIPE_GET_PROVIDER_INFO)(
                self.ptr,
                provider,
                buf.len() as u32,
                &mut len,
                buf.as_mut_ptr(),
            )
        }))?;
        Ok(utf16_to_string(&buf[..(len as usize).min(buf.len())]))
    }

    /// Walks the calling thread's managed stack (`thread == 0`), calling `callback` per frame.
    ///
    /// # Safety
    /// `client_data` must be what `callback` expects, valid for the duration of the call.
    pub unsafe fn do_stack_snapshot_current_thread(
        &self,
        callback: StackSnapshotCallback,
        client_data: *mut c_void,
    ) -> HRESULT {
        type F = unsafe extern "system" fn(
            *mut c_void,
            ThreadID,
            StackSnapshotCallback,
            u32,
            *mut c_void,
            *mut u8,
            u32,
        ) -> HRESULT;
        // SAFETY: Info2 slot 36 is DoStackSnapshot; thread 0 means the current thread, no
        // seed context is passed, and the caller vouches for `client_data`.
        gate::RUNTIME.call(|| unsafe {
            method::<F>(self.ptr, slot::DO_STACK_SNAPSHOT)(
                self.ptr,
                0,
                callback,
                0,
                client_data,
                std::ptr::null_mut(),
                0,
            )
        })
    }

    /// Creates a weak GC handle to an object. Call only where the object cannot move: on the
    /// allocating thread before the allocation returns to managed code, during a GC callback,
    /// or while the runtime is suspended.
    pub fn create_weak_handle(&self, object: ObjectID) -> Result<ObjectHandleID, HRESULT> {
        self.require(13)?;
        type F = unsafe extern "system" fn(*mut c_void, ObjectID, u32, *mut ObjectHandleID) -> HRESULT;
        let mut handle: ObjectHandleID = 0;
        // SAFETY: Info13 slot 108 is CreateHandle(ObjectID, COR_PRF_HANDLE_TYPE, ObjectHandleID*).
        check(gate::RUNTIME.call(|| unsafe {
            method::<F>(self.ptr, slot::CREATE_HANDLE)(self.ptr, object, HANDLE_TYPE_WEAK, &mut handle)
        }))?;
        if handle == 0 { Err(E_FAIL) } else { Ok(handle) }
    }

    pub fn destroy_handle(&self, handle: ObjectHandleID) -> Result<(), HRESULT> {
        self.require(13)?;
        type F = unsafe extern "system" fn(*mut c_void, ObjectHandleID) -> HRESULT;
        // SAFETY: Info13 slot 109 is DestroyHandle(ObjectHandleID); the handle came from
        // create_weak_handle and is destroyed once.
        check(gate::RUNTIME.call(|| unsafe { method::<F>(self.ptr, slot::DESTROY_HANDLE)(self.ptr, handle) }))
    }

    /// The object a handle refers to, or 0 once the GC has collected it.
    pub fn object_from_handle(&self, handle: ObjectHandleID) -> Result<ObjectID, HRESULT> {
        self.require(13)?;
        type F = unsafe extern "system" fn(*mut c_void, ObjectHandleID, *mut ObjectID) -> HRESULT;
        let mut object: ObjectID = 0;
        // SAFETY: Info13 slot 110 is GetObjectIDFromHandle(ObjectHandleID, ObjectID*).
        check(gate::RUNTIME.call(|| unsafe {
            method::<F>(self.ptr, slot::GET_OBJECT_ID_FROM_HANDLE)(self.ptr, handle, &mut object)
        }))?;
        Ok(object)
    }

    /// The generation ranges of the GC heap (gen0..2, LOH=3, POH=4).
    pub fn generation_bounds(&self, out: &mut Vec<GenerationRange>) -> Result<(), HRESULT> {
        type F = unsafe extern "system" fn(*mut c_void, u32, *mut u32, *mut GenerationRange) -> HRESULT;
        let mut needed = 0u32;
        for _ in 0..3 {
            let capacity = out.capacity().max(16);
            out.clear();
            out.reserve(capacity);
            // SAFETY: Info2 slot 54 is GetGenerationBounds(ULONG cap, ULONG* count, RANGE[]);
            // the buffer holds `capacity` entries.
            check(gate::RUNTIME.call(|| unsafe {
                method::<F>(self.ptr, slot::GET_GENERATION_BOUNDS)(
                    self.ptr,
                    capacity as u32,
                    &mut needed,
                    out.as_mut_ptr(),
                )
            }))?;
            if needed as usize <= capacity {
                // SAFETY: the runtime initialised the first `needed` entries.
                unsafe { out.set_len(needed as usize) };
                return Ok(());
            }
            out.reserve(needed as usize * 2);
        }
        Err(E_FAIL)
    }

    /// The ranges of the non-GC heap (frozen objects: string literals, `typeof` results), .NET 8+.
    pub fn non_gc_heap_bounds(&self, out: &mut Vec<NonGcHeapRange>) -> Result<(), HRESULT> {
        self.require(14)?;
        type F = unsafe extern "system" fn(*mut c_void, u32, *mut u32, *mut NonGcHeapRange) -> HRESULT;
        let mut needed = 0u32;
        for _ in 0..3 {
            let capacity = out.capacity().max(16);
            out.clear();
            out.reserve(capacity);
            // SAFETY: Info14 slot 112 is GetNonGCHeapBounds(ULONG cap, ULONG* count, RANGE[]);
            // version checked above; the buffer holds `capacity` entries.
            check(gate::RUNTIME.call(|| unsafe {
                method::<F>(self.ptr, slot::GET_NON_GC_HEAP_BOUNDS)(
                    self.ptr,
                    capacity as u32,
                    &mut needed,
                    out.as_mut_ptr(),
                )
            }))?;
            if needed as usize <= capacity {
                // SAFETY: the runtime initialised the first `needed` entries.
                unsafe { out.set_len(needed as usize) };
                return Ok(());
            }
            out.reserve(needed as usize * 2);
        }
        Err(E_FAIL)
    }

    /// Forces a full blocking collection. Only from a thread the profiler created, and off the
    /// agent thread (`own_thread`): the runtime sets up a thread object for the caller.
    pub fn force_gc(&self) -> Result<(), HRESULT> {
        type F = unsafe extern "system" fn(*mut c_void) -> HRESULT;
        own_thread::away_from_agent_thread("induce a GC", || {
            // SAFETY: Info slot 28 is ForceGC().
            check(gate::RUNTIME.call(|| unsafe { method::<F>(self.ptr, slot::FORCE_GC)(self.ptr) }))
        })
        .unwrap_or(Err(E_FAIL))
    }

    /// `Some` for array classes.
    pub fn array_info(&self, class: ClassID) -> Result<Option<ArrayInfo>, HRESULT> {
        type F = unsafe extern "system" fn(*mut c_void, ClassID, *mut u32, *mut ClassID, *mut u32) -> HRESULT;
        let mut info = ArrayInfo { element_type: 0, element_class: 0, rank: 0 };
        // SAFETY: Info slot 11 is IsArrayClass(ClassID, CorElementType*, ClassID*, ULONG*).
        let hr = gate::RUNTIME.call(|| unsafe {
            method::<F>(self.ptr, slot::IS_ARRAY_CLASS)(
                self.ptr,
                class,
                &mut info.element_type,
                &mut info.element_class,
                &mut info.rank,
            )
        });
        match hr {
            S_OK => Ok(Some(info)),
            S_FALSE => Ok(None),
            hr => Err(hr),
        }
    }

    pub fn class_info(&self, class: ClassID) -> Result<ClassInfo, HRESULT> {
        type F = unsafe extern "system" fn(
            *mut c_void,
            ClassID,
            *mut ModuleID,
            *mut mdToken,
            *mut ClassID,
            u32,
            *mut u32,
            *mut ClassID,
        ) -> HRESULT;
        let mut info = ClassInfo::default();
        let mut parent: ClassID = 0;
        let mut count = 0u32;
        // SAFETY: Info2 slot 41 is GetClassIDInfo2; a zero-capacity type-argument buffer asks
        // only for the count.
        check(gate::RUNTIME.call(|| unsafe {
            method::<F>(self.ptr, slot::GET_CLASS_ID_INFO2)(
                self.ptr,
                class,
                &mut info.module,
                &mut info.type_def,
                &mut parent,
                0,
                &mut count,
                std::ptr::null_mut(),
            )
        }))?;
        if count > 0 {
            info.type_args = vec![0; count as usize];
            // SAFETY: as above, with a buffer of `count` entries.
            check(gate::RUNTIME.call(|| unsafe {
                method::<F>(self.ptr, slot::GET_CLASS_ID_INFO2)(
                    self.ptr,
                    class,
                    &mut info.module,
                    &mut info.type_def,
                    &mut parent,
                    count,
                    &mut count,
                    info.type_args.as_mut_ptr(),
                )
            }))?;
            info.type_args.truncate(count as usize);
        }
        if info.module == 0 {
            // Some classes answer only the v1 query.
            type F1 = unsafe extern "system" fn(*mut c_void, ClassID, *mut ModuleID, *mut mdToken) -> HRESULT;
            // SAFETY: Info slot 14 is GetClassIDInfo(ClassID, ModuleID*, mdTypeDef*).
            check(gate::RUNTIME.call(|| unsafe {
                method::<F1>(self.ptr, slot::GET_CLASS_ID_INFO)(self.ptr, class, &mut info.module, &mut info.type_def)
            }))?;
        }
        Ok(info)
    }

    /// An address in the runtime's own code (where one of this interface's methods is): which
    /// loaded module is the runtime, even when it is linked into a single-file app's host.
    pub fn runtime_code_address(&self) -> usize {
        // SAFETY: `ptr` is the live interface (see `query`); slot 38 exists in every version we
        // accept and holds a function pointer, read here as a plain address.
        unsafe { method::<usize>(self.ptr, slot::GET_FUNCTION_INFO2) }
    }

    /// The managed function whose compiled code holds `ip` (JIT-compiled or ReadyToRun); an
    /// error for any other address.
    pub fn function_from_ip(&self, ip: usize) -> Result<FunctionID, HRESULT> {
        type F = unsafe extern "system" fn(*mut c_void, usize, *mut FunctionID) -> HRESULT;
        let mut function: FunctionID = 0;
        // SAFETY: Info slot 7 is GetFunctionFromIP(LPCBYTE ip, FunctionID*); `ip` is only looked up.
        check(unsafe { method::<F>(self.ptr, slot::GET_FUNCTION_FROM_IP)(self.ptr, ip, &mut function) })?;
        if function == 0 { Err(E_FAIL) } else { Ok(function) }
    }

    pub fn function_info(&self, function: FunctionID) -> Result<FunctionInfo, HRESULT> {
        type F = unsafe extern "system" fn(
            *mut c_void,
            FunctionID,
            usize,
            *mut ClassID,
            *mut ModuleID,
            *mut mdToken,
            u32,
            *mut u32,
            *mut ClassID,
        ) -> HRESULT;
        let mut info = FunctionInfo::default();
        let mut count = 0u32;
        // SAFETY: Info2 slot 38 is GetFunctionInfo2; frame info 0 and no type-argument buffer.
        check(gate::RUNTIME.call(|| unsafe {
            method::<F>(self.ptr, slot::GET_FUNCTION_INFO2)(
                self.ptr,
                function,
                0,
                &mut info.class,
                &mut info.module,
                &mut info.token,
                0,
                &mut count,
                std::ptr::null_mut(),
            )
        }))?;
        Ok(info)
    }

    /// The metadata reader of a module. The caller owns the returned reference.
    pub fn module_metadata(&self, module: ModuleID) -> Result<MetaDataImport, HRESULT> {
        type F = unsafe extern "system" fn(*mut c_void, ModuleID, u32, *const GUID, *mut *mut c_void) -> HRESULT;
        let mut unknown: *mut c_void = std::ptr::null_mut();
        // SAFETY: Info slot 21 is GetModuleMetaData(ModuleID, DWORD ofRead=0, REFIID, IUnknown**).
        let hr = gate::RUNTIME.call(|| unsafe {
            method::<F>(self.ptr, slot::GET_MODULE_META_DATA)(
                self.ptr,
                module,
                0,
                &guids::IID_IMETADATAIMPORT,
                &mut unknown,
            )
        });
        if hr != S_OK || unknown.is_null() {
            return Err(if hr == S_OK || hr == S_FALSE { E_FAIL } else { hr });
        }
        // SAFETY: the runtime returned an IMetaDataImport with one reference we now own.
        Ok(unsafe { MetaDataImport::from_owned(unknown) })
    }

    /// Metadata reader and method token of a function (for functions whose module lookup fails).
    pub fn function_metadata(&self, function: FunctionID) -> Result<(MetaDataImport, mdToken), HRESULT> {
        type F =
            unsafe extern "system" fn(*mut c_void, FunctionID, *const GUID, *mut *mut c_void, *mut mdToken) -> HRESULT;
        let mut unknown: *mut c_void = std::ptr::null_mut();
        let mut token: mdToken = 0;
        // SAFETY: Info slot 19 is GetTokenAndMetaDataFromFunction(FunctionID, REFIID, IUnknown**, mdToken*).
        check(gate::RUNTIME.call(|| unsafe {
            method::<F>(self.ptr, slot::GET_TOKEN_AND_METADATA_FROM_FUNCTION)(
                self.ptr,
                function,
                &guids::IID_IMETADATAIMPORT,
                &mut unknown,
                &mut token,
            )
        }))?;
        if unknown.is_null() {
            return Err(E_FAIL);
        }
        // SAFETY: the runtime returned an IMetaDataImport with one reference we now own.
        Ok((unsafe { MetaDataImport::from_owned(unknown) }, token))
    }
}

impl Drop for ProfilerInfo {
    fn drop(&mut self) {
        // SAFETY: we own the reference obtained by QueryInterface in `query`.
        gate::RUNTIME.call(|| unsafe { release(self.ptr) });
    }
}

fn check(hr: HRESULT) -> Result<(), HRESULT> {
    if succeeded(hr) { Ok(()) } else { Err(hr) }
}
