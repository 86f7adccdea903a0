//! `ICorProfilerInfo*` methods that look into code (native code and IL maps), modules, objects
//! (class, size, heap suspension) and statics (addresses, class layouts): what the agent thread
//! asks when it resolves stacks and lines and when it walks the heap.

use std::ffi::c_void;

use super::super::com_call::{method, release};
use super::super::gate;
use super::super::types::*;
use super::{CodeChunk, FieldOffset, IlToNativeMap, ObjectCallback, ObjectReferenceCallback};
use super::{ProfilerInfo, check, slot};

impl ProfilerInfo {
    /// The file a module was loaded from (empty for in-memory modules).
    pub fn module_path(&self, module: ModuleID) -> Result<String, HRESULT> {
        type F = unsafe extern "system" fn(
            *mut c_void,
            ModuleID,
            *mut *const u8,
            u32,
            *mut u32,
            *mut WCHAR,
            *mut usize,
        ) -> HRESULT;
        let mut base: *const u8 = std::ptr::null();
        let mut assembly = 0usize;
        let mut len = 0u32;
        let mut buf = vec![0u16; 1024];
        // SAFETY: Info slot 20 is GetModuleInfo(ModuleID, LPCBYTE*, ULONG cch, ULONG* pcch,
        // WCHAR[], AssemblyID*); the buffer holds `buf.len()` units.
        check(gate::RUNTIME.call(|| unsafe {
            method::<F>(self.ptr, slot::GET_MODULE_INFO)(
                self.ptr,
                module,
                &mut base,
                buf.len() as u32,
                &mut len,
                buf.as_mut_ptr(),
                &mut assembly,
            )
        }))?;
        Ok(utf16_to_string(&buf[..(len as usize).min(buf.len())]))
    }

    /// Start addresses of every compiled version (tiers) of a function.
    pub fn native_code_starts(&self, function: FunctionID) -> Result<Vec<usize>, HRESULT> {
        self.require(9)?;
        type F = unsafe extern "system" fn(*mut c_void, FunctionID, usize, u32, *mut u32, *mut usize) -> HRESULT;
        self.two_call(|cap, len, buf| {
            // SAFETY: Info9 slot 90 is GetNativeCodeStartAddresses(FunctionID, ReJITID, ULONG32,
            // ULONG32*, UINT_PTR[]); `buf` holds `cap` entries.
            gate::RUNTIME.call(|| unsafe {
                method::<F>(self.ptr, slot::GET_NATIVE_CODE_START_ADDRESSES)(self.ptr, function, 0, cap, len, buf)
            })
        })
    }

    /// The native code chunks of the code version starting at `start`.
    pub fn code_chunks(&self, start: usize) -> Result<Vec<CodeChunk>, HRESULT> {
        self.require(9)?;
        type F = unsafe extern "system" fn(*mut c_void, usize, u32, *mut u32, *mut CodeChunk) -> HRESULT;
        self.two_call(|cap, len, buf| {
            // SAFETY: Info9 slot 92 is GetCodeInfo4(UINT_PTR, ULONG32, ULONG32*, COR_PRF_CODE_INFO[]).
            gate::RUNTIME
                .call(|| unsafe { method::<F>(self.ptr, slot::GET_CODE_INFO4)(self.ptr, start, cap, len, buf) })
        })
    }

    /// The IL-to-native map of the code version starting at `start`.
    pub fn il_to_native_map(&self, start: usize) -> Result<Vec<IlToNativeMap>, HRESULT> {
        self.require(9)?;
        type F = unsafe extern "system" fn(*mut c_void, usize, u32, *mut u32, *mut IlToNativeMap) -> HRESULT;
        self.two_call(|cap, len, buf| {
            // SAFETY: Info9 slot 91 is GetILToNativeMapping3(UINT_PTR, ULONG32, ULONG32*,
            // COR_DEBUG_IL_TO_NATIVE_MAP[]).
            gate::RUNTIME.call(|| unsafe {
                method::<F>(self.ptr, slot::GET_IL_TO_NATIVE_MAPPING3)(self.ptr, start, cap, len, buf)
            })
        })
    }

    /// Walks every object on the GC heap with the runtime suspended (Info15, .NET 9+). Call it
    /// from the profiler's own thread; the callback runs on this thread.
    ///
    /// # Safety
    /// `state` must be what `callback` expects and outlive the call.
    pub unsafe fn enumerate_gc_heap_objects(
        &self,
        callback: ObjectCallback,
        state: *mut c_void,
    ) -> Result<(), HRESULT> {
        self.require(15)?;
        type F = unsafe extern "system" fn(*mut c_void, ObjectCallback, *mut c_void) -> HRESULT;
        // SAFETY: Info15 slot 114 is EnumerateGCHeapObjects(ObjectCallback, void*); the caller
        // vouches for `state`.
        check(
            gate::RUNTIME
                .call(|| unsafe { method::<F>(self.ptr, slot::ENUMERATE_GC_HEAP_OBJECTS)(self.ptr, callback, state) }),
        )
    }

    /// Stops every managed thread at a safe point (Info10), as a GC does, until
    /// [`ProfilerInfo::resume_runtime`]. From the profiler's own thread only; a heap walk inside
    /// the suspension does not suspend again.
    pub fn suspend_runtime(&self) -> Result<(), HRESULT> {
        self.require(10)?;
        type F = unsafe extern "system" fn(*mut c_void) -> HRESULT;
        // SAFETY: Info10 slot 97 is SuspendRuntime().
        check(gate::RUNTIME.call(|| unsafe { method::<F>(self.ptr, slot::SUSPEND_RUNTIME)(self.ptr) }))
    }

    /// Lets the threads [`ProfilerInfo::suspend_runtime`] stopped run again. Not through the
    /// gate: a suspension we began must end, so its caller holds the gate across both
    /// ([`gate::Gate::hold`]) and `Shutdown` waits for the resume.
    pub fn resume_runtime(&self) -> Result<(), HRESULT> {
        self.require(10)?;
        type F = unsafe extern "system" fn(*mut c_void) -> HRESULT;
        // SAFETY: Info10 slot 98 is ResumeRuntime().
        check(unsafe { method::<F>(self.ptr, slot::RESUME_RUNTIME)(self.ptr) })
    }

    /// An object's class. Only while the runtime is suspended (in a GC or a heap walk) or
    /// on the object's own allocating thread.
    pub fn class_of_object(&self, object: ObjectID) -> Result<ClassID, HRESULT> {
        type F = unsafe extern "system" fn(*mut c_void, ObjectID, *mut ClassID) -> HRESULT;
        let mut class: ClassID = 0;
        let hr = gate::RUNTIME.call(|| {
            // SAFETY: Info slot 3 is GetClassFromObject(ObjectID, ClassID*).
            unsafe { method::<F>(self.ptr, slot::GET_CLASS_FROM_OBJECT)(self.ptr, object, &mut class) }
        });
        check(hr)?;
        Ok(class)
    }

    /// An object's size in bytes, under the same rules as `class_of_object`.
    pub fn object_size(&self, object: ObjectID) -> Result<usize, HRESULT> {
        self.require(4)?;
        type F = unsafe extern "system" fn(*mut c_void, ObjectID, *mut usize) -> HRESULT;
        let mut size = 0usize;
        let hr = gate::RUNTIME.call(|| {
            // SAFETY: Info4 slot 80 is GetObjectSize2(ObjectID, SIZE_T*).
            unsafe { method::<F>(self.ptr, slot::GET_OBJECT_SIZE2)(self.ptr, object, &mut size) }
        });
        check(hr)?;
        Ok(size)
    }

    /// Calls `callback` for every reference `object` holds, with the address of the slot that
    /// holds it (Info10). Only while the runtime is suspended (inside `EnumerateGCHeapObjects`
    /// or a GC callback), when objects cannot move. S_FALSE: the object holds no references.
    ///
    /// # Safety
    /// `object` must be a live object and the runtime suspended; `state` must be what
    /// `callback` expects and outlive the call.
    pub unsafe fn enumerate_object_references(
        &self,
        object: ObjectID,
        callback: ObjectReferenceCallback,
        state: *mut c_void,
    ) -> Result<(), HRESULT> {
        self.require(10)?;
        type F = unsafe extern "system" fn(*mut c_void, ObjectID, ObjectReferenceCallback, *mut c_void) -> HRESULT;
        // SAFETY: Info10 slot 93 is EnumerateObjectReferences(ObjectID, ObjectReferenceCallback,
        // void*); the caller vouches for the object and `state`.
        check(gate::RUNTIME.call(|| unsafe {
            method::<F>(self.ptr, slot::ENUMERATE_OBJECT_REFERENCES)(self.ptr, object, callback, state)
        }))
    }

    /// Every module loaded now (Info3 `EnumModules`).
    pub fn modules(&self) -> Result<Vec<ModuleID>, HRESULT> {
        self.require(3)?;
        type F = unsafe extern "system" fn(*mut c_void, *mut *mut c_void) -> HRESULT;
        let mut enumerator: *mut c_void = std::ptr::null_mut();
        // SAFETY: Info3 slot 66 is EnumModules(ICorProfilerModuleEnum**).
        check(gate::RUNTIME.call(|| unsafe { method::<F>(self.ptr, slot::ENUM_MODULES)(self.ptr, &mut enumerator) }))?;
        if enumerator.is_null() {
            return Err(E_FAIL);
        }
        // ICorProfilerModuleEnum: 3 Skip, 4 Reset, 5 Clone, 6 GetCount, 7 Next.
        type Next = unsafe extern "system" fn(*mut c_void, u32, *mut ModuleID, *mut u32) -> HRESULT;
        let mut modules = Vec::new();
        let mut batch = [0 as ModuleID; 64];
        loop {
            let mut fetched = 0u32;
            // SAFETY: slot 7 of ICorProfilerModuleEnum is Next(ULONG, ModuleID[], ULONG*); the
            // buffer holds `batch.len()` ids.
            let hr = gate::RUNTIME.call(|| unsafe {
                method::<Next>(enumerator, 7)(enumerator, batch.len() as u32, batch.as_mut_ptr(), &mut fetched)
            });
            modules.extend_from_slice(&batch[..(fetched as usize).min(batch.len())]);
            if hr != S_OK || fetched == 0 || modules.len() > 1_000_000 {
                break;
            }
        }
        // SAFETY: we own the enumerator's one reference.
        gate::RUNTIME.call(|| unsafe { release(enumerator) });
        Ok(modules)
    }

    /// The FunctionID of a method, only if the runtime has already loaded it (a lookup in the
    /// module's map: never loads a type). Generic methods have none.
    pub fn loaded_function(&self, module: ModuleID, method_def: mdToken) -> Result<FunctionID, HRESULT> {
        type F = unsafe extern "system" fn(*mut c_void, ModuleID, mdToken, *mut FunctionID) -> HRESULT;
        let mut function: FunctionID = 0;
        // SAFETY: Info slot 8 is GetFunctionFromToken(ModuleID, mdToken, FunctionID*).
        check(gate::RUNTIME.call(|| unsafe {
            method::<F>(self.ptr, slot::GET_FUNCTION_FROM_TOKEN)(self.ptr, module, method_def, &mut function)
        }))?;
        if function == 0 { Err(E_FAIL) } else { Ok(function) }
    }

    /// The class declaring a function (0 for generic classes).
    pub fn function_class(&self, function: FunctionID) -> Result<ClassID, HRESULT> {
        type F =
            unsafe extern "system" fn(*mut c_void, FunctionID, *mut ClassID, *mut ModuleID, *mut mdToken) -> HRESULT;
        let (mut class, mut module, mut token) = (0 as ClassID, 0 as ModuleID, 0 as mdToken);
        // SAFETY: Info slot 15 is GetFunctionInfo(FunctionID, ClassID*, ModuleID*, mdToken*).
        check(gate::RUNTIME.call(|| unsafe {
            method::<F>(self.ptr, slot::GET_FUNCTION_INFO)(self.ptr, function, &mut class, &mut module, &mut token)
        }))?;
        Ok(class)
    }

    /// The AppDomain a module's assembly lives in (CoreCLR has one).
    pub fn module_app_domain(&self, module: ModuleID) -> Result<usize, HRESULT> {
        type Info = unsafe extern "system" fn(
            *mut c_void,
            ModuleID,
            *mut *const u8,
            u32,
            *mut u32,
            *mut WCHAR,
            *mut usize,
        ) -> HRESULT;
        let mut base: *const u8 = std::ptr::null();
        let mut assembly = 0usize;
        let mut name_len = 0u32;
        // SAFETY: Info slot 20 is GetModuleInfo; a zero-length name buffer asks for no name.
        check(gate::RUNTIME.call(|| unsafe {
            method::<Info>(self.ptr, slot::GET_MODULE_INFO)(
                self.ptr,
                module,
                &mut base,
                0,
                &mut name_len,
                std::ptr::null_mut(),
                &mut assembly,
            )
        }))?;
        type Asm = unsafe extern "system" fn(
            *mut c_void,
            usize,
            u32,
            *mut u32,
            *mut WCHAR,
            *mut usize,
            *mut ModuleID,
        ) -> HRESULT;
        let mut domain = 0usize;
        let mut manifest: ModuleID = 0;
        // SAFETY: Info slot 26 is GetAssemblyInfo(AssemblyID, ULONG, ULONG*, WCHAR[],
        // AppDomainID*, ModuleID*); no name buffer is asked for.
        check(gate::RUNTIME.call(|| unsafe {
            method::<Asm>(self.ptr, slot::GET_ASSEMBLY_INFO)(
                self.ptr,
                assembly,
                0,
                std::ptr::null_mut(),
                std::ptr::null_mut(),
                &mut domain,
                &mut manifest,
            )
        }))?;
        if domain == 0 { Err(E_FAIL) } else { Ok(domain) }
    }

    /// Where a static field of an initialised class lives. `CORPROF_E_DATAINCOMPLETE` while
    /// the class is not initialised yet; an error for thread statics, RVA statics and literals.
    pub fn static_field_address(&self, class: ClassID, field: mdToken, app_domain: usize) -> Result<usize, HRESULT> {
        type F = unsafe extern "system" fn(*mut c_void, ClassID, mdToken, usize, *mut usize) -> HRESULT;
        let mut address = 0usize;
        // SAFETY: Info2 slot 50 is GetAppDomainStaticAddress(ClassID, mdFieldDef, AppDomainID, void**).
        check(gate::RUNTIME.call(|| unsafe {
            method::<F>(self.ptr, slot::GET_APP_DOMAIN_STATIC_ADDRESS)(self.ptr, class, field, app_domain, &mut address)
        }))?;
        if address == 0 { Err(E_FAIL) } else { Ok(address) }
    }

    /// Which kind of static a field is (`COR_PRF_STATIC_TYPE`: 1 app-domain, 2 thread, 4 context,
    /// 8 RVA; 0 not a static), for a loaded class.
    pub fn static_field_kind(&self, class: ClassID, field: mdToken) -> Result<u32, HRESULT> {
        type F = unsafe extern "system" fn(*mut c_void, ClassID, mdToken, *mut u32) -> HRESULT;
        let mut kind = 0u32;
        // SAFETY: Info2 slot 53 is GetStaticFieldInfo(ClassID, mdFieldDef, COR_PRF_STATIC_TYPE*).
        check(gate::RUNTIME.call(|| unsafe {
            method::<F>(self.ptr, slot::GET_STATIC_FIELD_INFO)(self.ptr, class, field, &mut kind)
        }))?;
        Ok(kind)
    }

    /// Where one thread's value of a thread-static field lives (Info3 `GetThreadStaticAddress2`).
    /// `CORPROF_E_DATAINCOMPLETE` while the class is not initialised or the thread has no
    /// storage for it yet.
    pub fn thread_static_address(
        &self,
        class: ClassID,
        field: mdToken,
        app_domain: usize,
        thread: ThreadID,
    ) -> Result<usize, HRESULT> {
        self.require(3)?;
        type F = unsafe extern "system" fn(*mut c_void, ClassID, mdToken, usize, ThreadID, *mut usize) -> HRESULT;
        let mut address = 0usize;
        // SAFETY: Info3 slot 68 is GetThreadStaticAddress2(ClassID, mdFieldDef, AppDomainID,
        // ThreadID, void**).
        check(gate::RUNTIME.call(|| unsafe {
            method::<F>(self.ptr, slot::GET_THREAD_STATIC_ADDRESS2)(
                self.ptr,
                class,
                field,
                app_domain,
                thread,
                &mut address,
            )
        }))?;
        if address == 0 { Err(E_FAIL) } else { Ok(address) }
    }

    /// The operating system's id of a managed thread (`GetThreadInfo`); 0 when it has none now.
    pub fn os_thread_id(&self, thread: ThreadID) -> Result<u32, HRESULT> {
        type F = unsafe extern "system" fn(*mut c_void, ThreadID, *mut u32) -> HRESULT;
        let mut id = 0u32;
        let call = || {
            // SAFETY: Info slot 12 is GetThreadInfo(ThreadID, DWORD*); `id` outlives the call.
            unsafe { method::<F>(self.ptr, slot::GET_THREAD_INFO)(self.ptr, thread, &mut id) }
        };
        check(gate::RUNTIME.call(call))?;
        Ok(id)
    }

    /// Every managed thread the runtime knows now (Info4 `EnumThreads`).
    pub fn threads(&self) -> Result<Vec<ThreadID>, HRESULT> {
        self.require(4)?;
        type F = unsafe extern "system" fn(*mut c_void, *mut *mut c_void) -> HRESULT;
        let mut enumerator: *mut c_void = std::ptr::null_mut();
        // SAFETY: Info4 slot 71 is EnumThreads(ICorProfilerThreadEnum**).
        check(gate::RUNTIME.call(|| unsafe { method::<F>(self.ptr, slot::ENUM_THREADS)(self.ptr, &mut enumerator) }))?;
        if enumerator.is_null() {
            return Err(E_FAIL);
        }
        // ICorProfilerThreadEnum: 3 Skip, 4 Reset, 5 Clone, 6 GetCount, 7 Next.
        type Next = unsafe extern "system" fn(*mut c_void, u32, *mut ThreadID, *mut u32) -> HRESULT;
        let mut threads = Vec::new();
        let mut batch = [0 as ThreadID; 64];
        loop {
            let mut fetched = 0u32;
            // SAFETY: slot 7 of ICorProfilerThreadEnum is Next(ULONG, ThreadID[], ULONG*); the
            // buffer holds `batch.len()` ids.
            let hr = gate::RUNTIME.call(|| unsafe {
                method::<Next>(enumerator, 7)(enumerator, batch.len() as u32, batch.as_mut_ptr(), &mut fetched)
            });
            threads.extend_from_slice(&batch[..(fetched as usize).min(batch.len())]);
            if hr != S_OK || fetched == 0 || threads.len() > 100_000 {
                break;
            }
        }
        // SAFETY: we own the enumerator's one reference.
        gate::RUNTIME.call(|| unsafe { release(enumerator) });
        Ok(threads)
    }

    /// The instance fields a class declares (not its base classes'), with their offsets.
    pub fn class_layout(&self, class: ClassID) -> Result<Vec<FieldOffset>, HRESULT> {
        type F = unsafe extern "system" fn(*mut c_void, ClassID, *mut FieldOffset, u32, *mut u32, *mut u32) -> HRESULT;
        let mut size = 0u32;
        self.two_call(|cap, len, buf| {
            // SAFETY: Info2 slot 40 is GetClassLayout(ClassID, COR_FIELD_OFFSET[], ULONG,
            // ULONG*, ULONG*); `buf` holds `cap` entries.
            gate::RUNTIME.call(|| unsafe {
                method::<F>(self.ptr, slot::GET_CLASS_LAYOUT)(self.ptr, class, buf, cap, len, &mut size)
            })
        })
    }

    /// A class's base class (0 for System.Object and for classes without one).
    pub fn parent_class(&self, class: ClassID) -> Result<ClassID, HRESULT> {
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
        let (mut module, mut type_def, mut parent, mut count) = (0 as ModuleID, 0 as mdToken, 0 as ClassID, 0u32);
        // SAFETY: Info2 slot 41 is GetClassIDInfo2; no type-argument buffer is asked for.
        check(gate::RUNTIME.call(|| unsafe {
            method::<F>(self.ptr, slot::GET_CLASS_ID_INFO2)(
                self.ptr,
                class,
                &mut module,
                &mut type_def,
                &mut parent,
                0,
                &mut count,
                std::ptr::null_mut(),
            )
        }))?;
        Ok(parent)
    }

    /// The count-then-fill pattern: ask with a small buffer, retry with the reported count.
    fn two_call<T: Default + Clone>(
        &self,
        mut call: impl FnMut(u32, *mut u32, *mut T) -> HRESULT,
    ) -> Result<Vec<T>, HRESULT> {
        let mut buf = vec![T::default(); 16];
        for _ in 0..3 {
            let mut len = 0u32;
            check(call(buf.len() as u32, &mut len, buf.as_mut_ptr()))?;
            if len as usize <= buf.len() {
                buf.truncate(len as usize);
                return Ok(buf);
            }
            buf = vec![T::default(); len as usize];
        }
        Err(E_FAIL)
    }
}
