//! Safe wrapper over `IMetaDataImport`, used to name types and methods.
//! Slot numbers follow `cor.h` (IUnknown's three included).

use std::ffi::c_void;

use super::com_call::{method, release};
use super::gate;
use super::types::*;

mod slot {
    pub const CLOSE_ENUM: usize = 3;
    pub const ENUM_TYPE_DEFS: usize = 6;
    pub const GET_TYPE_DEF_PROPS: usize = 12;
    pub const GET_TYPE_REF_PROPS: usize = 14;
    pub const ENUM_METHODS: usize = 18;
    pub const ENUM_FIELDS: usize = 20;
    pub const GET_METHOD_PROPS: usize = 30;
    pub const GET_FIELD_PROPS: usize = 57;
    pub const GET_NESTED_CLASS_PROPS: usize = 62;
}

/// `fdStatic`, `fdLiteral` (constants: no storage) and `fdHasFieldRVA` field attributes.
pub const FD_STATIC: u32 = 0x0010;
pub const FD_LITERAL: u32 = 0x0040;
pub const FD_HAS_FIELD_RVA: u32 = 0x0100;

/// A field's name, attributes and signature.
#[derive(Clone, Debug)]
pub struct FieldProps {
    pub name: String,
    pub flags: u32,
    pub signature: Vec<u8>,
}

/// `tdNested` visibility bits of a TypeDef's flags: non-zero for a nested type.
const TD_VISIBILITY_MASK: u32 = 0x7;
const TD_NESTED_FIRST: u32 = 0x2;

/// One module's metadata reader. Owns one COM reference.
pub struct MetaDataImport {
    ptr: *mut c_void,
}

// SAFETY: the runtime's metadata importers are safe to call from any thread for reading,
// which is all we do; each instance is used from one thread at a time.
unsafe impl Send for MetaDataImport {}

/// A TypeDef's name and flags.
#[derive(Clone, Debug)]
pub struct TypeDefProps {
    /// Full name including namespace, e.g. `System.Collections.Generic.List`1`.
    pub name: String,
    pub flags: u32,
}

impl TypeDefProps {
    pub fn is_nested(&self) -> bool {
        self.flags & TD_VISIBILITY_MASK >= TD_NESTED_FIRST
    }
}

impl MetaDataImport {
    /// # Safety
    /// `ptr` must be an `IMetaDataImport` on which the caller transfers one reference.
    pub unsafe fn from_owned(ptr: *mut c_void) -> Self {
        MetaDataImport { ptr }
    }

    pub fn type_def_props(&self, type_def: mdToken) -> Result<TypeDefProps, HRESULT> {
        type F = unsafe extern "system" fn(
            *mut c_void,
            mdToken,
            *mut WCHAR,
            u32,
            *mut u32,
            *mut u32,
            *mut mdToken,
        ) -> HRESULT;
        let mut flags = 0u32;
        let mut extends: mdToken = 0;
        let name = read_string(|buf, cap, len| {
            // SAFETY: slot 12 is GetTypeDefProps; `buf` has room for `cap` UTF-16 units.
            gate::RUNTIME.call(|| unsafe {
                method::<F>(self.ptr, slot::GET_TYPE_DEF_PROPS)(
                    self.ptr,
                    type_def,
                    buf,
                    cap,
                    len,
                    &mut flags,
                    &mut extends,
                )
            })
        })?;
        Ok(TypeDefProps { name, flags })
    }

    /// A TypeRef's full name (`System.Guid`).
    pub fn type_ref_name(&self, type_ref: mdToken) -> Result<String, HRESULT> {
        type F = unsafe extern "system" fn(*mut c_void, mdToken, *mut mdToken, *mut WCHAR, u32, *mut u32) -> HRESULT;
        let mut scope: mdToken = 0;
        read_string(|buf, cap, len| {
            // SAFETY: slot 14 is GetTypeRefProps(mdTypeRef, mdToken*, LPWSTR, ULONG, ULONG*);
            // `buf` has room for `cap` UTF-16 units.
            gate::RUNTIME.call(|| unsafe {
                method::<F>(self.ptr, slot::GET_TYPE_REF_PROPS)(self.ptr, type_ref, &mut scope, buf, cap, len)
            })
        })
    }

    /// The TypeDef enclosing a nested type.
    pub fn enclosing_class(&self, nested: mdToken) -> Option<mdToken> {
        type F = unsafe extern "system" fn(*mut c_void, mdToken, *mut mdToken) -> HRESULT;
        let mut enclosing: mdToken = 0;
        // SAFETY: slot 62 is GetNestedClassProps(mdTypeDef, mdTypeDef*).
        let hr = gate::RUNTIME
            .call(|| unsafe { method::<F>(self.ptr, slot::GET_NESTED_CLASS_PROPS)(self.ptr, nested, &mut enclosing) });
        (hr == S_OK && enclosing != 0 && enclosing != nested).then_some(enclosing)
    }

    /// A method's name and the TypeDef that declares it.
    pub fn method_props(&self, method_def: mdToken) -> Result<(String, mdToken), HRESULT> {
        type F = unsafe extern "system" fn(
            *mut c_void,
            mdToken,
            *mut mdToken,
            *mut WCHAR,
            u32,
            *mut u32,
            *mut u32,
            *mut *const u8,
            *mut u32,
            *mut u32,
            *mut u32,
        ) -> HRESULT;
        let mut class: mdToken = 0;
        let mut attributes = 0u32;
        let mut signature: *const u8 = std::ptr::null();
        let mut signature_len = 0u32;
        let mut rva = 0u32;
        let mut impl_flags = 0u32;
        let name = read_string(|buf, cap, len| {
            // SAFETY: slot 30 is GetMethodProps; every out-pointer is valid and `buf` has room
            // for `cap` UTF-16 units.
            gate::RUNTIME.call(|| unsafe {
                method::<F>(self.ptr, slot::GET_METHOD_PROPS)(
                    self.ptr,
                    method_def,
                    &mut class,
                    buf,
                    cap,
                    len,
                    &mut attributes,
                    &mut signature,
                    &mut signature_len,
                    &mut rva,
                    &mut impl_flags,
                )
            })
        })?;
        Ok((name, class))
    }
}

impl MetaDataImport {
    /// Every TypeDef of the module.
    pub fn type_defs(&self) -> Vec<mdToken> {
        type F = unsafe extern "system" fn(*mut c_void, *mut usize, *mut mdToken, u32, *mut u32) -> HRESULT;
        self.enumerate(|handle, buf, cap, len| {
            // SAFETY: slot 6 is EnumTypeDefs(HCORENUM*, mdTypeDef[], ULONG, ULONG*).
            gate::RUNTIME
                .call(|| unsafe { method::<F>(self.ptr, slot::ENUM_TYPE_DEFS)(self.ptr, handle, buf, cap, len) })
        })
    }

    /// The fields a TypeDef declares.
    pub fn fields(&self, type_def: mdToken) -> Vec<mdToken> {
        type F = unsafe extern "system" fn(*mut c_void, *mut usize, mdToken, *mut mdToken, u32, *mut u32) -> HRESULT;
        self.enumerate(|handle, buf, cap, len| {
            // SAFETY: slot 20 is EnumFields(HCORENUM*, mdTypeDef, mdFieldDef[], ULONG, ULONG*).
            gate::RUNTIME
                .call(|| unsafe { method::<F>(self.ptr, slot::ENUM_FIELDS)(self.ptr, handle, type_def, buf, cap, len) })
        })
    }

    /// The methods a TypeDef declares.
    pub fn methods(&self, type_def: mdToken) -> Vec<mdToken> {
        type F = unsafe extern "system" fn(*mut c_void, *mut usize, mdToken, *mut mdToken, u32, *mut u32) -> HRESULT;
        self.enumerate(|handle, buf, cap, len| {
            // SAFETY: slot 18 is EnumMethods(HCORENUM*, mdTypeDef, mdMethodDef[], ULONG, ULONG*).
            gate::RUNTIME.call(|| unsafe {
                method::<F>(self.ptr, slot::ENUM_METHODS)(self.ptr, handle, type_def, buf, cap, len)
            })
        })
    }

    pub fn field_props(&self, field: mdToken) -> Result<FieldProps, HRESULT> {
        type F = unsafe extern "system" fn(
            *mut c_void,
            mdToken,
            *mut mdToken,
            *mut WCHAR,
            u32,
            *mut u32,
            *mut u32,
            *mut *const u8,
            *mut u32,
            *mut u32,
            *mut *const c_void,
            *mut u32,
        ) -> HRESULT;
        let mut class: mdToken = 0;
        let mut flags = 0u32;
        let mut signature: *const u8 = std::ptr::null();
        let mut signature_len = 0u32;
        let mut constant_type = 0u32;
        let mut constant: *const c_void = std::ptr::null();
        let mut constant_len = 0u32;
        let name = read_string(|buf, cap, len| {
            // SAFETY: slot 57 is GetFieldProps; every out-pointer is valid and `buf` has room for
            // `cap` UTF-16 units.
            gate::RUNTIME.call(|| unsafe {
                method::<F>(self.ptr, slot::GET_FIELD_PROPS)(
                    self.ptr,
                    field,
                    &mut class,
                    buf,
                    cap,
                    len,
                    &mut flags,
                    &mut signature,
                    &mut signature_len,
                    &mut constant_type,
                    &mut constant,
                    &mut constant_len,
                )
            })
        })?;
        let signature = if signature.is_null() || signature_len == 0 || signature_len > 4096 {
            Vec::new()
        } else {
            // SAFETY: the importer returned a pointer to `signature_len` bytes of its own
            // metadata, valid while the importer lives; they are copied at once.
            unsafe { std::slice::from_raw_parts(signature, signature_len as usize) }.to_vec()
        };
        Ok(FieldProps { name, flags, signature })
    }

    /// The metadata enumeration pattern: fill batches until the enumerator runs dry, then close
    /// it. Capped, so a corrupt module cannot keep us here.
    fn enumerate(&self, mut call: impl FnMut(*mut usize, *mut mdToken, u32, *mut u32) -> HRESULT) -> Vec<mdToken> {
        const MAX_TOKENS: usize = 1 << 22;
        let mut handle = 0usize;
        let mut tokens = Vec::new();
        let mut batch = [0 as mdToken; 256];
        loop {
            let mut fetched = 0u32;
            let hr = call(&mut handle, batch.as_mut_ptr(), batch.len() as u32, &mut fetched);
            let fetched = (fetched as usize).min(batch.len());
            tokens.extend_from_slice(&batch[..fetched]);
            if hr != S_OK || fetched == 0 || tokens.len() >= MAX_TOKENS {
                break;
            }
        }
        if handle != 0 {
            type Close = unsafe extern "system" fn(*mut c_void, usize);
            // SAFETY: slot 3 is CloseEnum(HCORENUM), which returns nothing; the handle came
            // from this importer and is closed once.
            gate::RUNTIME.call(|| unsafe {
                method::<Close>(self.ptr, slot::CLOSE_ENUM)(self.ptr, handle);
                S_OK
            });
        }
        tokens
    }
}

impl Drop for MetaDataImport {
    fn drop(&mut self) {
        // SAFETY: we own one reference (from_owned's contract).
        gate::RUNTIME.call(|| unsafe { release(self.ptr) });
    }
}

/// The metadata API's two-call pattern: try a stack buffer, retry with the reported length.
fn read_string(mut call: impl FnMut(*mut WCHAR, u32, *mut u32) -> HRESULT) -> Result<String, HRESULT> {
    let mut buf = vec![0u16; 512];
    let mut len = 0u32;
    for _ in 0..2 {
        let hr = call(buf.as_mut_ptr(), buf.len() as u32, &mut len);
        if !succeeded(hr) {
            return Err(hr);
        }
        if (len as usize) <= buf.len() {
            return Ok(utf16_to_string(&buf[..len as usize]));
        }
        buf = vec![0u16; len as usize + 1];
    }
    Err(E_FAIL)
}
